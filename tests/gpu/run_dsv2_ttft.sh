#!/usr/bin/env bash
# One 1-GPU device call (~6 min), for session 20: DeepSeek-V2-Lite's 256 x 1k TTFT with float8 linear layers and
# experts read 1853-1876 ms in session 19 (prefill through cuBLAS, calls 5 and 7) against 1572 in session 18, and
# 1661 with the Triton kernel for every product (SPMD_FP8_CUBLAS_MIN_ROWS=0) in the same call. Session 19's kernel
# changes touch only products of up to 64 rows, so: the kernels of session 18's last commit (7b996a7,
# tests/gpu/kernels_at_7b996a7.patch, made by `git diff HEAD 7b996a7 -- kernels/`: remake it if kernels/ changed
# since) against today's, interleaved twice, then cuBLAS off, each TTFT and bs256 step. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
ab_parts ttft tests/gpu/kernels_at_7b996a7.patch 90 python3 -m spmd_infer.bench \
  bench.preset=deepseek-v2-lite bench.workload=decode 'bench.batch_sizes=[256]' bench.context=1024 \
  model.expert_dtype=fp8 model.linear_dtype=fp8 bench.output="$OUT/ttft.json"
part triton 90 env SPMD_FP8_CUBLAS_MIN_ROWS=0 python3 -m spmd_infer.bench bench.preset=deepseek-v2-lite \
  bench.workload=decode 'bench.batch_sizes=[256]' bench.context=1024 model.expert_dtype=fp8 model.linear_dtype=fp8 \
  bench.output="$OUT/triton.json"
for run in ttft_new1 ttft_old1 ttft_new2 ttft_old2 triton; do
  echo "--- $run"; grep -E "^decode bs|Error" "$OUT/$run.txt" | cut -c1-110; done
rm -rf "$OUT"/*.json "$OUT"/*.run
