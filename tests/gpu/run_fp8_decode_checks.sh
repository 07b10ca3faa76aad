#!/usr/bin/env bash
# One 1-GPU device call (~5 min), session 19: after fp8_linear's early weight fetch and new decode tiles, the float8
# kernels' GPU tests, the Qwen3 check from its float8 copy (session 18: 0 exact + 15 within top-5 + 1 outside), and
# nano-vllm (Qwen3-0.6B) with float8 linear layers (session 18: 23.1k tok/s, against 24.6k in bf16); then a sweep of
# K splits for the decode tile at 1 and 16 rows (split_k's choice against 2, 4 and 8 programs a tile).
# Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 120 tests/kernels/test_scaled_activations.py tests/kernels/test_fp8_linear.py \
  tests/kernels/test_activation.py
check_part 100 --model qwen3 --layouts 1x1 --out /tmp/chk_fp8 --block-fp8
nano_part nano_fp8 -- model.linear_dtype=fp8
part splits 120 python3 tests/gpu/tune_fp8_linear.py --rows 1,16 \
  --tiles '16,64,4,6,0;16,64,4,6,2;16,64,4,6,4;16,64,4,6,8;16,64,4,4,8' --swap 1 --jobs 12
grep -A3 summary "$OUT/splits.txt" | cut -c1-220
rm -rf "$OUT"/*.run "$OUT"/*.json
