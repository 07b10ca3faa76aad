#!/usr/bin/env bash
# One 1-GPU device call (~3 min): decode attention with V laid out by head dimension, [blocks, Hkv, D, page]
# (tokens innermost, so the P V dot's operand pairs are adjacent bytes) against token-major and head-major pages,
# bf16 and float8, pages of 16 and 32; under the engine's float8 tiles and under (128, 4, 3) for every split count.
# Needs 41575fb (the kernel's stride_vd, removed after this ran: V by dimension was the slowest layout). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
part vdim 200 python3 tests/gpu/tune_decode_attention.py --layouts --pages "16 32"
grep -vE "^\s*$" "$OUT/vdim.txt" | cut -c1-150
part vdim_wide 200 env SPMD_DECODE_FP8_CONFIGS="128,4,3" python3 tests/gpu/tune_decode_attention.py --layouts \
  --pages "16 32"
echo "--- float8 at (128, 4, 3)"; grep -E "^[a-z]|float8|failed|Error" "$OUT/vdim_wide.txt" | cut -c1-150
