#!/usr/bin/env bash
# One 2-GPU device call (~7 min), session 27: the 2-GPU workers after PartialSums.add_norm took over the fused
# reduce-and-norm (session 26's mend, not yet run on cards), then prefill CUDA graphs at tp2 (the all-reduces inside
# the pieces, push kernel or NCCL): Qwen3 against transformers at tp2, and Qwen3-0.6B's 256 x 512 prefill at tp2 with
# prefill graphs on / off. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
test_part tests 200 tests/test_symm_all_reduce.py tests/test_dp_exchange.py
check_part 240 --model qwen3 --layouts 1x2
for on in true false; do
  part "grid_$on" 150 torchrun --nproc-per-node 2 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=grid \
    'bench.grid_batch_sizes=[256]' 'bench.input_lens=[512]' 'bench.output_lens=[1]' bench.repeats=3 parallel.tp=2 \
    runtime.prefill_graphs=$on bench.output="$OUT/grid_$on.json"
  echo "qwen3-0.6b tp2 prefill_graphs=$on"
  grep -E "^grid|host-bound|CUDA graphs|Error" "$OUT/grid_$on.txt" | cut -c1-200
done
rm -rf "$OUT"/*.run "$OUT"/*.json
