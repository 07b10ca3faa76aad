#!/usr/bin/env bash
# One GPU (~6 min): skinny_gemm's kernel tests in bf16, then its tile sweep against cuBLAS over the presets'
# decode projections (tune_skinny_gemm.py).
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part kernel_tests 200 python3 -m pytest -q tests/kernels/test_skinny_gemm.py
tail -3 "$OUT/kernel_tests.txt"
part tune 380 python3 tests/gpu/tune_skinny_gemm.py
grep -v " failed: " "$OUT/tune.txt" | tail -30  # per-shape rows: tune.txt
