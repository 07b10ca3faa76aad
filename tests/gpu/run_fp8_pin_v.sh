#!/usr/bin/env bash
# One 1-GPU device call (~6 min): float8 decode attention with V widened where it is loaded (e4m3_to_f16 marked
# impure, SPMD_DECODE_FP8_PIN_V=1), so the P V dot's operand goes through shared memory as fp16 (ldmatrix.trans)
# instead of being gathered a byte at a time (ptx_census.py decode --pin-v 0/1). The float8 / decode kernel tests
# in bf16, the engine's tiles with and without it, a tile sweep with it (every tile widened in assembly), then
# nano-vllm fp8 with and without it. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
part kernels 120 python3 -m pytest -q -n 8 tests/kernels/test_fp8_kv.py tests/kernels/test_decode_attention.py
tail -1 "$OUT/kernels.txt"; grep -E "^FAILED" "$OUT/kernels.txt" | head
for pin in 0 1; do
  part "engine_tiles_pin$pin" 120 env SPMD_DECODE_FP8_PIN_V=$pin TUNE_ORDERS=0 python3 tests/gpu/tune_decode_attention.py \
    --layouts --pages 16
  echo "--- engine tiles, pin V $pin"; grep -E "^[a-z]|float8.*token-major|failed|Error" "$OUT/engine_tiles_pin$pin.txt" | cut -c1-150
done
part tiles_pin1 200 env SPMD_DECODE_FP8_PIN_V=1 SPMD_DECODE_FP8_ASM_WIDEN=all python3 tests/gpu/tune_decode_attention.py \
  --fp8 --configs "128,4,3 64,2,6 32,1,6 64,4,4 64,2,4 32,1,4 128,4,4 64,4,3"
echo "--- float8 tiles, V pinned, all widened in assembly"; grep -vE "^\s*$" "$OUT/tiles_pin1.txt" | cut -c1-150 | tail -45
nano_part nano_fp8_pin0 SPMD_DECODE_FP8_PIN_V=0 -- cache.dtype=fp8
nano_part nano_fp8_pin1 SPMD_DECODE_FP8_PIN_V=1 -- cache.dtype=fp8
nano_part nano_fp8_pin1_all SPMD_DECODE_FP8_PIN_V=1 SPMD_DECODE_FP8_ASM_WIDEN=all -- cache.dtype=fp8
nano_part nano_fp8_pin1_narrow SPMD_DECODE_FP8_PIN_V=1 SPMD_DECODE_FP8_ASM_WIDEN=all SPMD_DECODE_FP8_CONFIGS="64,2,6 32,1,6" \
  -- cache.dtype=fp8
nano_part nano_fp8_pin0b SPMD_DECODE_FP8_PIN_V=0 -- cache.dtype=fp8
rm -rf "$OUT"/*.run "$OUT"/*.json
