#!/usr/bin/env bash
# One 1-GPU device call (~2 min): where a bs1 decode step goes with each kernel's own time. Under PDL a kernel's
# profiled time includes its wait on the one before (run_head_figures.sh PROFILE=1: Llama-3-8B bs1 kernels 117% of
# wall), so this profiles Llama-3-8B @1k and Qwen3-0.6B @600 with SPMD_PDL=0: every projection then goes to cuBLAS
# (skinny_gemm needs PDL), but attention, norms, rotary and SiLU are timed on their own. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
prof() {
  local name=$1 preset=$2 ctx=$3; shift 3
  part "$name" 120 env "$@" python3 -m spmd_infer.bench bench.preset="$preset" bench.workload=decode \
    'bench.batch_sizes=[1]' bench.context="$ctx" bench.repeats=1 bench.profile=true bench.profile_top=14 \
    bench.output="$OUT/$name.json"
  echo "--- $name: $*"; grep -E "^decode bs" "$OUT/$name.txt" | cut -c1-100
  grep -A14 "^profile of" "$OUT/$name.txt" | cut -c1-140
}
prof llama_nopdl llama-3-8b 1024 SPMD_PDL=0
prof qwen_nopdl qwen3-0.6b 600 SPMD_PDL=0
rm -rf "$OUT"/*.json "$OUT"/*.run
