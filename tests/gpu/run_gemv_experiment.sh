#!/usr/bin/env bash
# One GPU (~3 min): experiment_gemv.py -- Triton skinny GEMM (plain and RMSNorm-fused) vs cuBLAS on Llama-3-8B's
# projections at M = 1 and 4, timed in CUDA graphs: does a decode-only linear path have room for bs1 MBU 85%?
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part gemv 500 python3 tests/gpu/experiment_gemv.py
grep -v " failed: " "$OUT/gemv.txt" | tail -14
