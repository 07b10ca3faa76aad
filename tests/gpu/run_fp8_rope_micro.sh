#!/usr/bin/env bash
# One 1-GPU device call (~2 min), session 20: the float8 qkv projection alone and with its rope epilogue by rows and
# split-K, with the compiled variants' registers and spills (bench_fp8_qkv_rope.py). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
part micro 200 python3 tests/gpu/bench_fp8_qkv_rope.py
cat "$OUT/micro.txt" | cut -c1-260
