#!/usr/bin/env bash
# One 1-GPU device call (~4 min), session 15: float8 experts' activations at prefill-sized batches, float8
# (SPMD_MOE_FP8_ACT=1, the default) against the model's dtype (0), interleaved twice: DeepSeek-V2-Lite decode bs256
# @1k with model.expert_dtype=fp8, whose TTFT is the 256 x 1024-token prefill in 8192-token chunks. (The kernel
# alone, tune_fused_moe.py --fp8, put float8 activations at 969 us against 852 on a 4 x 2048 prefill; the engine's
# TTFT at 2152 ms against 2505 in two other calls.) Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
for run in 1a 0a 1b 0b; do
  part "ttft_$run" 60 env SPMD_MOE_FP8_ACT=${run:0:1} python3 -m spmd_infer.bench bench.preset=deepseek-v2-lite \
    bench.workload=decode 'bench.batch_sizes=[256]' bench.context=1024 model.expert_dtype=fp8 \
    bench.output=$OUT/t_$run.json
  echo "float8 activations ${run:0:1}: $(grep -E '^decode bs|Error' "$OUT/ttft_$run.txt" | cut -c1-90)"
done
rm -rf "$OUT"/*.run "$OUT"/*.json
