#!/usr/bin/env bash
# One 1-GPU device call (~2 min), after run_prefill_host.sh (session 27) found no flagged host sync in Qwen3-0.6B's
# ~8k-token prefill steps yet 86-91% of each step's time before its forward's launch, at MFU 61%: is the host slow to
# launch (kernel time well under wall), or does it wait on the GPU inside the launch path (a hidden sync: kernel time
# near wall, the wait in some CUDA runtime call's self time)? bench.profile_phase=prefill with PDL off (one kernel at
# a time), with the host's heaviest calls, overlapped prefill on (the default) and off. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
CASE=(bench.preset=qwen3-0.6b bench.workload=grid 'bench.grid_batch_sizes=[256]' 'bench.input_lens=[512]'
  'bench.output_lens=[1]' bench.repeats=2 bench.profile=true bench.profile_phase=prefill bench.profile_top=22)
for overlap in true false; do
  part "overlap_$overlap" 150 env SPMD_PDL=0 python3 -m spmd_infer.bench "${CASE[@]}" \
    runtime.overlap_prefill=$overlap bench.output="$OUT/overlap_$overlap.json"
  grep -E "^grid|host-bound" "$OUT/overlap_$overlap.txt" | cut -c1-130
  grep -A50 "^profile of" "$OUT/overlap_$overlap.txt" | cut -c1-150
done
rm -rf "$OUT"/*.run
