#!/usr/bin/env bash
# One 2-GPU device call (~7 min), after run_push_all_reduce2.sh: the push kernel now issues all of a program's rows
# before its first release (one wait for them, not one a row), and MoE layers (FusedMoE, DeepSeek's routed + shared
# experts) leave their output reduce to the next RMSNorm too. Tests on the cards, the micro-benchmark at one and two
# programs an SM, the DeepSeek-V2-Lite check at tp2, its decode on / off, and Llama-3-8B tp2 decode on / off.
# Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
test_part tests 300 tests/test_symm_all_reduce.py tests/kernels/test_push_all_reduce.py
for k in 1 2; do
  part "micro$k" 100 torchrun --nproc-per-node 2 tests/gpu/bench_all_reduce.py --rows 1,64,132,133,200,256 \
    --programs-per-sm $k
  grep -v -E "^W1|warn" "$OUT/micro$k.txt" | head -9
done
part dsv2 200 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 1x2 --num-prompts 8 --out /tmp/chk_dsv2
grep -E "RESULT|OUTSIDE|Error" "$OUT/dsv2.txt" | head -4
switch_parts dsv2_decode SPMD_PUSH_ALL_REDUCE 150 torchrun --nproc-per-node 2 -m spmd_infer.bench parallel.tp=2 \
  bench.preset=deepseek-v2-lite bench.workload=decode 'bench.batch_sizes=[64,1]' bench.context=1024 bench.repeats=2
switch_parts llama SPMD_PUSH_ALL_REDUCE 150 torchrun --nproc-per-node 2 -m spmd_infer.bench parallel.tp=2 \
  bench.preset=llama-3-8b bench.workload=decode 'bench.batch_sizes=[256,64,1]' bench.context=1024 bench.repeats=2
rm -rf "$OUT"/*.json "$OUT"/*.run
