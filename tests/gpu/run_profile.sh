#!/usr/bin/env bash
# One 1-GPU device call: where decode time goes (bench.profile: kernels' share of wall time and the heaviest
# kernels) for the shapes whose speed targets are open: Llama-3-8B bs1/bs64, Qwen3-0.6B bs256, V2-Lite bs64.
set -uo pipefail
source tests/gpu/device_env.sh
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
bench() { local name=$1 limit=$2; shift 2; echo "=== $name"
  timeout "$limit" python3 -m spmd_infer.bench bench.profile=true bench.output=$OUT/$name.json "$@" > "$OUT/$name.txt" 2>&1
  echo "rc=$?"; grep -A40 "^model " "$OUT/$name.txt" | grep -v "^results"; }
bench llama_bs1 100 bench.preset=llama-3-8b bench.workload=decode 'bench.batch_sizes=[1]' bench.context=1024
bench llama_bs64 100 bench.preset=llama-3-8b bench.workload=decode 'bench.batch_sizes=[64]' bench.context=1024
bench qwen06_bs256 100 bench.preset=qwen3-0.6b bench.workload=decode 'bench.batch_sizes=[256]' bench.context=512
bench dsv2_bs64 120 bench.preset=deepseek-v2-lite bench.workload=decode 'bench.batch_sizes=[64]' bench.context=512 model.max_model_len=2048
