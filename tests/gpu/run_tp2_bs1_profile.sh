#!/usr/bin/env bash
# One 2-GPU device call (~5 min): first the symmetric all-reduce's 2-GPU test (verifies session 24's last mends,
# dc4916f), then where a Llama-3-8B tp2 bs1 @1k decode step goes (3.2 ms against ~1.9 ms of weight reads per rank
# at the copy rate): profiled with PDL on (wall time and the kernels' share) and with SPMD_PDL=0 (each kernel's own
# time; every projection then on cuBLAS), both with parallel.all_reduce=auto. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
test_part tests 240 tests/test_symm_all_reduce.py
prof() {
  local name=$1; shift
  part "$name" 150 env "$@" torchrun --nproc-per-node 2 -m spmd_infer.bench parallel.tp=2 bench.preset=llama-3-8b \
    bench.workload=decode 'bench.batch_sizes=[1]' bench.context=1024 bench.repeats=2 bench.profile=true \
    bench.profile_top=24 bench.output="$OUT/$name.json"
  echo "--- $name: $*"; grep -E "^decode bs|Error|all.reduce" "$OUT/$name.txt" | cut -c1-140
  grep -A26 "^profile of" "$OUT/$name.txt" | cut -c1-150
}
prof tp2_pdl SPMD_PDL=1
prof tp2_nopdl SPMD_PDL=0
rm -rf "$OUT"/*.json "$OUT"/*.run
