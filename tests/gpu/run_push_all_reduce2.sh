#!/usr/bin/env bash
# One 2-GPU device call (~8 min), after run_push_all_reduce.sh: the push kernel now takes a row per program only up to
# a program an SM (more rows: each program pushes several before it waits), so that no program waits on one its GPU
# has not scheduled. Its tests on the card again, the micro-benchmark to 1024 rows (slots for 1024) to place its
# upper bound, the Qwen3 and DeepSeek-V2-Lite checks at tp2 (MLA's o_proj reduced in the norm too), Llama-3-8B tp2
# decode on / off (SPMD_PUSH_ALL_REDUCE) and DeepSeek-V2-Lite tp2 decode on / off. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
test_part tests 300 tests/test_symm_all_reduce.py tests/kernels/test_push_all_reduce.py
part micro 150 torchrun --nproc-per-node 2 tests/gpu/bench_all_reduce.py --rows 1,16,64,132,133,256,512,1024 \
  --push-rows 1024
grep -v -i warn "$OUT/micro.txt" | head -12
check_part 200 --model qwen3 --layouts 1x2 --num-prompts 8 --out /tmp/chk_push
part dsv2 200 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 1x2 --num-prompts 8 --out /tmp/chk_dsv2
grep -E "RESULT|OUTSIDE|Error" "$OUT/dsv2.txt" | head -4
switch_parts llama SPMD_PUSH_ALL_REDUCE 150 torchrun --nproc-per-node 2 -m spmd_infer.bench parallel.tp=2 \
  bench.preset=llama-3-8b bench.workload=decode 'bench.batch_sizes=[256,64,16,1]' bench.context=1024 \
  bench.repeats=2
switch_parts dsv2_decode SPMD_PUSH_ALL_REDUCE 150 torchrun --nproc-per-node 2 -m spmd_infer.bench parallel.tp=2 \
  bench.preset=deepseek-v2-lite bench.workload=decode 'bench.batch_sizes=[64,1]' bench.context=1024 bench.repeats=2
rm -rf "$OUT"/*.json "$OUT"/*.run
