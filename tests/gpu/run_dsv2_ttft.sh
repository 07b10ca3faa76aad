#!/usr/bin/env bash
# One 1-GPU device call (~7 min), for session 20: DeepSeek-V2-Lite's 256 x 1k TTFT with float8 linear layers and
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
# Llama-3-8B's prefill of 8 x 2048 with float8 linear layers (session 18: 266 ms, through cuBLAS), today's kernels
# and session 18's.
old=$(patched_kernels llama tests/gpu/kernels_at_7b996a7.patch)
for run in new old; do
  pp=$PYTHONPATH; [[ $run == old ]] && pp=$old
  part "prefill_$run" 80 env PYTHONPATH="$pp" python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=grid \
    'bench.grid_batch_sizes=[8]' 'bench.input_lens=[2048]' 'bench.output_lens=[1]' \
    scheduler.max_num_batched_tokens=16384 model.linear_dtype=fp8 bench.output="$OUT/prefill_$run.json"
  echo "--- prefill_$run"; grep -E "^grid|Error" "$OUT/prefill_$run.txt" | cut -c1-150
done
for run in ttft_new1 ttft_old1 ttft_new2 ttft_old2 triton; do
  echo "--- $run"; grep -E "^decode bs|Error" "$OUT/$run.txt" | cut -c1-110; done
rm -rf "$OUT"/*.json "$OUT"/*.run
