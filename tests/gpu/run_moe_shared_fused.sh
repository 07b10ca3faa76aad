#!/usr/bin/env bash
# One 1-GPU device call (~6 min), written in session 32 (its device time had gone): shared experts run inside
# fused_moe as more experts of the routed experts' width (SPMD_MOE_SHARED_FUSED_TOKENS=N, off by default), their
# weights read in place, Qwen2-MoE's sigmoid gate computed in the routing kernel. Its kernel and layer tests in bf16
# (tests/test_qwen2_moe.py's GPU tests: fused against the shared MLP on its own, fp32 and bf16); Qwen1.5-MoE's and
# DeepSeek-V2-Lite's shapes against transformers with it on at up to 256 tokens (decode fused; prefill steps past
# the limit run the shared MLP on its own); decode bs1 / bs8 / bs64 of both presets with it off and on at up to 64.
# If faster, make it the default (layers/moe.py, README's row, kernels/README). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part kernels 150 tests/kernels/test_moe_route.py tests/kernels/test_fused_moe.py tests/test_qwen2_moe.py \
  -k "shared or route"
for model in qwen2moe dsv2lite; do
  check_part 120 SPMD_MOE_SHARED_FUSED_TOKENS=256 --model $model --out /tmp/check_$model
  mv "$OUT/check.txt" "$OUT/check_$model.txt"
done
for preset in ${PRESETS:-qwen1.5-moe-a2.7b deepseek-v2-lite}; do
  for tokens in 0 64; do
    BATCHES=1,8,64 LIMIT=90 decode_part "${preset}_$tokens" "$preset" SPMD_MOE_SHARED_FUSED_TOKENS=$tokens
  done
done
rm -rf "$OUT"/*.run "$OUT"/*.json
