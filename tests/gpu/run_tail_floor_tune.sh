#!/usr/bin/env bash
# One 1-GPU device call (~2 min): tail_floor's tile width and warp count on flat rows (tune_tail_floor.py), the case
# where every row searches past its candidates; 4 warps of 256-wide tiles so far, one program a row. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
part tune 200 python3 tests/gpu/tune_tail_floor.py
grep -E "^S=|Error|^NVIDIA" "$OUT/tune.txt" | cut -c1-400
