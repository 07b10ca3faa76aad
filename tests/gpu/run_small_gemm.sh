#!/usr/bin/env bash
# One 1-GPU device call (~4 min), session 20: a Triton GEMM (fp8_linear's structure over bf16 weights: early weight
# fetch, split K) against cuBLAS on Qwen3-0.6B's decode projections at 1-256 rows (bench_small_gemm.py), where
# cuBLAS spends 5-11 us a product on 2-12 MB (run_small_model_floor.sh). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
part small_gemm 420 python3 tests/gpu/bench_small_gemm.py
grep -v "^ *(" "$OUT/small_gemm.txt" | cut -c1-200 | tail -30
