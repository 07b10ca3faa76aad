#!/usr/bin/env bash
# One 1-GPU device call (~7 min), for session 20: DeepSeek-V2-Lite's 256 x 1k TTFT with float8 linear layers and
# experts read 1853-1876 ms in session 19 (prefill through cuBLAS, calls 5 and 7) against 1572 in session 18, and
# 1661 with the Triton kernel for every product (SPMD_FP8_CUBLAS_MIN_ROWS=0) in the same call. Session 19's kernel
# changes touch products of up to 64 rows: so session 18's last commit (7b996a7, the whole tree) against today's,
# interleaved twice, then cuBLAS off; and Llama-3-8B's float8 prefill of 8 x 2048 (session 18: 266 ms) both ways.
# Before the call, in the repo root here: git archive 7b996a7 > session18.tar (git ignores it).
# Carry [".whl", "session18.tar"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
[[ -f session18.tar ]] || { echo "session18.tar missing: run 'git archive 7b996a7 > session18.tar' first"; exit 2; }
old=/tmp/session18
rm -rf "$old" && mkdir -p "$old/src" "$old/pkgs" && tar -xf session18.tar -C "$old/src"
ln -sfn "$old/src/kernels" "$old/pkgs/spmd_kernels" && ln -sfn "$old/src/configs" "$old/pkgs/spmd_infer_configs"
# run NAME TREE LIMIT BENCH_ARG...: the benchmark from today's tree (.) or session 18's ($old/src).
run() { local name=$1 tree=$2 limit=$3 pp=$PYTHONPATH; shift 3
  [[ $tree != . ]] && pp="/tmp/site:$old/pkgs:$tree"
  part "$name" "$limit" bash -c 'cd "$1" && exec env PYTHONPATH="$2" "${@:3}"' _ "$tree" "$pp" \
    python3 -m spmd_infer.bench bench.output="$OUT/$name.json" "$@"
  echo "--- $name"; grep -E "^decode bs|^grid|Error" "$OUT/$name.txt" | cut -c1-150; }
dsv2=(bench.preset=deepseek-v2-lite bench.workload=decode 'bench.batch_sizes=[256]' bench.context=1024
  model.expert_dtype=fp8 model.linear_dtype=fp8)
for pass in 1 2; do
  run "ttft_new$pass" . 90 "${dsv2[@]}"
  run "ttft_old$pass" "$old/src" 90 "${dsv2[@]}"
done
export SPMD_FP8_CUBLAS_MIN_ROWS=0
run ttft_triton . 90 "${dsv2[@]}"
unset SPMD_FP8_CUBLAS_MIN_ROWS
llama=(bench.preset=llama-3-8b bench.workload=grid 'bench.grid_batch_sizes=[8]' 'bench.input_lens=[2048]'
  'bench.output_lens=[1]' scheduler.max_num_batched_tokens=16384 model.linear_dtype=fp8)
run prefill_new . 80 "${llama[@]}"
run prefill_old "$old/src" 80 "${llama[@]}"
rm -rf "$OUT"/*.json "$OUT"/*.run
