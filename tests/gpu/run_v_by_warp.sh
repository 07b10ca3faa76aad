#!/usr/bin/env bash
# One 1-GPU device call (~8 min), session 38: decode attention over a float8 cache with V's columns dealt to the
# P V dot's warps (decode_attention.v_by_warp, SPMD_DECODE_FP8_V_BY_WARP): V read from shared memory as words and
# paired by byte permutes in registers, no fp16 copy of it in shared memory. Its tests and the decode kernels' in
# bf16; the float8 tiles alone in CUDA graphs over tune_decode_attention's shapes with it off and on; Qwen3-0.6B on
# the nano-vllm protocol over the float8 cache off / on, interleaved twice. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 150 tests/kernels/test_fp8_kv.py tests/kernels/test_decode_attention.py
for on in 0 1; do
  part "tiles_$on" 120 env SPMD_DECODE_FP8_V_BY_WARP=$on python3 tests/gpu/tune_decode_attention.py --fp8 \
    --configs "${TILES:-64,2,6 32,1,6 128,4,3 64,4,4 128,2,4 64,1,6}"
  echo "--- V_BY_WARP=$on"; grep -vE "^\s*$|warn" "$OUT/tiles_$on.txt" | tail -60 | cut -c1-120
done
for run in 1 2; do
  for on in 1 0; do
    nano_part "nano_${on}_$run" SPMD_DECODE_FP8_V_BY_WARP=$on -- cache.dtype=fp8
    nano_summary "nano_${on}_$run"
  done
done
rm -rf "$OUT"/*.run
