#!/usr/bin/env bash
# One 1-GPU device call (~8 min), session 33: the MoE router's product inside the routing kernel's launch at up to
# 16 tokens (SPMD_MOE_ROUTER_FUSED, kernels/moe_route.py's moe_route_hidden), replacing cuBLAS's dot + reduce (and
# DeepSeek's fp32 copy of x) ahead of moe_route. Its kernel tests in bf16 (with the MoE layer tests); the kernel
# alone (time_moe_router.py); Qwen1.5-MoE's and DeepSeek-V2-Lite's shapes against transformers; decode bs1 / bs8 /
# bs16 of the three MoE presets with it off and on. Session 33's last changes (the last program routing max(4, T's
# power of two) rows; fp32 routers split 16 ways) were timed only in parts. If slower anywhere, turn the default off
# (kernels/moe_route.py, README's row). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part kernels 120 tests/kernels/test_moe_route.py tests/kernels/test_fused_moe.py tests/test_qwen2_moe.py
# The kernel alone against F.linear + moe_route.
part router 90 python3 tests/gpu/time_moe_router.py --programs 32,64 --splits 8,16
grep -A12 "^model" "$OUT/router.txt"
for model in qwen2moe dsv2lite; do
  check_part 120 SPMD_MOE_ROUTER_FUSED=1 --model $model --out /tmp/check_$model
  mv "$OUT/check.txt" "$OUT/check_$model.txt"
done
for preset in ${PRESETS:-qwen1.5-moe-a2.7b deepseek-v2-lite qwen3-30b-a3b}; do
  for fused in 0 1; do
    BATCHES=1,8,16 LIMIT=90 decode_part "${preset}_$fused" "$preset" SPMD_MOE_ROUTER_FUSED=$fused
  done
done
rm -rf "$OUT"/*.run "$OUT"/*.json
