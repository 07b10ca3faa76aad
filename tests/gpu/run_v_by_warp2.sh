#!/usr/bin/env bash
# One 1-GPU device call (~8 min), session 38, after run_v_by_warp.sh (V dealt by warp: (128, 4, 3) 224 -> 202 us
# at nano-vllm bs256 and the one-warp (32, 1, 6) 80 -> 72 at bs64, but the engine's one-split tile (64, 2, 6) even):
# the float8 tiles with V dealt by warp, the one-warp tiles widening in Triton's conversion (FP8_ASM_WIDEN 2) and in
# assembly (1); then Qwen3-0.6B nano-vllm over the float8 cache with V dealt by warp and (128, 4, 3) for one split
# against today's defaults, interleaved twice. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
for widen in 2 1; do
  part "tiles_$widen" 150 env SPMD_DECODE_FP8_V_BY_WARP=1 SPMD_DECODE_FP8_ASM_WIDEN=$widen \
    python3 tests/gpu/tune_decode_attention.py --fp8 \
    --configs "${TILES:-128,4,3 128,4,4 64,4,6 64,4,3 128,8,3 32,1,6 32,1,4 64,2,6}"
  echo "--- ASM_WIDEN=$widen"; grep -vE "^\s*$|warn|\(default\)$" "$OUT/tiles_$widen.txt" | tail -60 | cut -c1-100
done
for run in 1 2; do
  nano_part "nano_new_$run" SPMD_DECODE_FP8_V_BY_WARP=1 SPMD_DECODE_FP8_CONFIGS="128,4,3 32,1,6" -- cache.dtype=fp8
  nano_summary "nano_new_$run"
  nano_part "nano_old_$run" SPMD_DECODE_FP8_V_BY_WARP=0 -- cache.dtype=fp8
  nano_summary "nano_old_$run"
done
rm -rf "$OUT"/*.run "$OUT"/*.json
