#!/usr/bin/env bash
# One 1-GPU device call (~2 min), session 27: Qwen3-0.6B's 256 x 512 prefill through prefill graphs took 17.7 ms a
# step against 14.65 ms of kernels in the eager profile (run_prefill_profile_host.sh): the same profile with the
# graphs on (kernels inside graphs included), PDL off for per-kernel times, then on. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
for pdl in 0 1; do
  part "graphs_pdl$pdl" 150 env SPMD_PDL=$pdl python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=grid \
    'bench.grid_batch_sizes=[256]' 'bench.input_lens=[512]' 'bench.output_lens=[1]' bench.repeats=2 \
    bench.profile=true bench.profile_phase=prefill bench.profile_top=14 bench.output="$OUT/graphs_pdl$pdl.json"
  grep -E "^grid|host-bound" "$OUT/graphs_pdl$pdl.txt" | cut -c1-130
  grep -A30 "^profile of" "$OUT/graphs_pdl$pdl.txt" | cut -c1-150
done
rm -rf "$OUT"/*.run "$OUT"/*.json
