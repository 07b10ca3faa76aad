#!/usr/bin/env bash
# One 1-GPU device call (~4 min), after run_fp8_pin_v.sh: nano-vllm fp8, three settings twice, interleaved (the
# run-to-run spread of one run was 29.1k-30.2k): A today's defaults without V pinned; B V pinned at the default
# tiles ((128, 4, 3) one split: 4.6 -> 5.1 ms a step in run_fp8_pin_v.sh, though the kernel alone timed the same);
# C one split on (64, 2, 6) widened in assembly with V pinned (218 us against 224 alone), two splits (32, 1, 6) by
# Triton's conversion. Then the float8 kernel tests under C. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for round in 1 2; do
  nano_part "a_pin0_$round" SPMD_DECODE_FP8_PIN_V=0 -- cache.dtype=fp8
  nano_part "b_pin1_$round" SPMD_DECODE_FP8_PIN_V=1 -- cache.dtype=fp8
  nano_part "c_pin1_64_$round" SPMD_DECODE_FP8_PIN_V=1 SPMD_DECODE_FP8_ASM_WIDEN=2 SPMD_DECODE_FP8_CONFIGS="64,2,6 32,1,6" \
    -- cache.dtype=fp8
done
part kernels_c 120 env SPMD_DECODE_FP8_PIN_V=1 SPMD_DECODE_FP8_ASM_WIDEN=2 SPMD_DECODE_FP8_CONFIGS="64,2,6 32,1,6" \
  python3 -m pytest -q -n 8 tests/kernels/test_fp8_kv.py tests/kernels/test_decode_attention.py
tail -1 "$OUT/kernels_c.txt"; grep -E "^FAILED" "$OUT/kernels_c.txt" | head
rm -rf "$OUT"/*.run "$OUT"/*.json
