#!/usr/bin/env bash
# One 2-GPU device call (~6 min), session 33: the MoE decode fusions of sessions 32-33 (shared experts inside fused_moe,
# SPMD_MOE_SHARED_FUSED_TOKENS; the router's product in the routing launch, SPMD_MOE_ROUTER_FUSED) with every
# expert split over two GPUs (parallel.moe=tp: the only multi-GPU layout where shared experts fuse), against
# transformers at tp2 and at dp2 + DP attention; the routing kernels' tests in bf16; then where batch-1 decode time
# goes in Qwen3-30B-A3B (no shared experts) with both on, one kernel at a time (SPMD_PDL=0). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
test_part kernels 90 tests/kernels/test_moe_route.py
for model in dsv2lite qwen2moe; do
  check_part 150 --model $model --layouts 1x2 2x1 --extra parallel.moe=tp parallel.dp_attention=true \
    --out /tmp/check_$model
  mv "$OUT/check.txt" "$OUT/check_$model.txt"
done
part profile 120 env SPMD_PDL=0 python3 -m spmd_infer.bench bench.preset=qwen3-30b-a3b bench.workload=decode \
  'bench.batch_sizes=[1]' bench.context=1024 bench.profile=true bench.profile_top=24 bench.output="$OUT/profile.json"
grep -E "^decode bs" "$OUT/profile.txt" | cut -c1-110
grep -A26 "^profile of" "$OUT/profile.txt" | cut -c1-150
rm -rf "$OUT"/*.run "$OUT"/*.json
