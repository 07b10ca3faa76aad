#!/usr/bin/env bash
# One 2-GPU device call (~4 min), after run_push_all_reduce3.sh (two programs an SM: 256 rows 17.7 -> 15.4 us): the
# push kernel's grid now grows to as many programs as an SM holds together, learned from each variant's first launch.
# Tests on the cards, the micro-benchmark at that default, Llama-3-8B tp2 decode and the Qwen3 check at tp2.
# Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
test_part tests 300 tests/test_symm_all_reduce.py tests/kernels/test_push_all_reduce.py
part micro 100 torchrun --nproc-per-node 2 tests/gpu/bench_all_reduce.py --rows 1,64,133,200,256
grep -v -E "^W1|warn" "$OUT/micro.txt" | head -8
check_part 200 --model qwen3 --layouts 1x2 --num-prompts 8 --out /tmp/chk_push
part llama 150 torchrun --nproc-per-node 2 -m spmd_infer.bench parallel.tp=2 bench.preset=llama-3-8b \
  bench.workload=decode 'bench.batch_sizes=[256,200,64,1]' bench.context=1024 bench.repeats=2
grep -E "^decode bs|Error" "$OUT/llama.txt" | cut -c1-110
rm -rf "$OUT"/*.json "$OUT"/*.run
