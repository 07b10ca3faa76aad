#!/usr/bin/env bash
# One 1-GPU device call (~4 min): decode attention over a float8 cache with K / V widened to fp16 in registers by
# e4m3_to_f16's inline assembly (SPMD_DECODE_FP8_ASM_WIDEN=all) against Triton's own widening (none): the engine's
# tiles, then a tile sweep with it. (As first run, session 12, the switch was 0 / 1 (V only) / 2 (K and V): 1 and 2
# timed alike, and only the K-and-V form was kept.) Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for w in none all; do
  part "widen$w" 150 env SPMD_DECODE_FP8_ASM_WIDEN=$w python3 tests/gpu/tune_decode_attention.py --layouts --pages 16
  echo "--- widen $w"; grep -E "^[a-z]|float8.*token-major|failed|Error" "$OUT/widen$w.txt" | cut -c1-150
done
for w in all; do
  part "tiles$w" 200 env SPMD_DECODE_FP8_ASM_WIDEN=$w python3 tests/gpu/tune_decode_attention.py --fp8 \
    --configs "64,2,6 32,1,6 64,4,4 128,4,3 128,4,4 64,2,4 128,8,3"
  echo "--- tiles, widen $w"; grep -vE "^\s*$" "$OUT/tiles$w.txt" | cut -c1-150 | tail -45
done
