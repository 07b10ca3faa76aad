#!/usr/bin/env bash
# One 1-GPU device call (~2 min): decode attention with its programs started longest context first (the order
# argument) against batch order, bf16 and float8, over tune_decode_attention.py's shapes (contexts drawn at random,
# as a decode batch holds them): a list-scheduling model of nano-vllm bs256 put random order's last wave at
# 1.17-1.29x the balanced time, longest first at 1.02-1.03x. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
part order 200 python3 tests/gpu/tune_decode_attention.py --layouts --pages 16
grep -vE "^\s*$|head-major" "$OUT/order.txt" | cut -c1-150
