#!/usr/bin/env bash
# One 1-GPU device call (~3 min): decode attention over token-major pages [blocks, page, Hkv, D] against head-major
# ones [blocks, Hkv, page, D], bf16 and float8, pages of 16, 32 and 64 tokens (tune_decode_attention.py --layouts);
# and whether Nsight Compute / Systems are on the host. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for tool in ncu nsys; do command -v "$tool" || ls /usr/local/cuda*/bin/"$tool" /opt/nvidia/*/"$tool" 2>/dev/null; done
part layouts 400 python3 tests/gpu/tune_decode_attention.py --layouts --pages "16 32 64"
cat "$OUT/layouts.txt"
