#!/usr/bin/env bash
# One 1-GPU device call (~4 min), session 19: where float8 linear layers lose to bf16 at decode (small models:
# Qwen3-0.6B, DeepSeek-V2-Lite's dense layers), whether cuBLAS's float8 GEMM (128 rows and up) or the Triton kernel
# serves batches of 64-256 rows better: decode @1k bs256 / bs64 with SPMD_FP8_CUBLAS_MIN_ROWS at its default (128)
# and 0 (the Triton kernel everywhere). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
for rows in 128 0; do
  LIMIT=60 decode_part "qwen06_$rows" qwen3-0.6b SPMD_FP8_CUBLAS_MIN_ROWS=$rows -- model.linear_dtype=fp8
done
for rows in 128 0; do
  LIMIT=90 decode_part "dsv2_$rows" deepseek-v2-lite SPMD_FP8_CUBLAS_MIN_ROWS=$rows -- model.expert_dtype=fp8 \
    model.linear_dtype=fp8
done
rm -rf "$OUT"/*.json "$OUT"/*.run
