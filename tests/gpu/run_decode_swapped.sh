#!/usr/bin/env bash
# One 1-GPU device call (~5 min), session 37: decode attention over a float8 cache computed transposed (tokens as the
# wgmma M side, decode_swapped.py) against the engine's kernel, kernel alone over tune_decode_attention's shapes
# (time_decode_swapped.py). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
part swapped 420 python3 tests/gpu/time_decode_swapped.py ${VARIANTS:+--variants "$VARIANTS"}
cat "$OUT/swapped.txt" | grep -v Warning
