#!/usr/bin/env bash
# One 1-GPU device call (~2 min): why nano-vllm's prefill leaves the GPU idle (run_nano_prefill_profile.sh: 18
# steps of 8192 tokens, kernels 15.4 ms a step against 27-31 ms of wall under the profiler; 0.36 s in one run and
# 0.55 s in the next). The prefill profile with SPMD_PDL=0 and its heaviest host calls (a long
# cudaStreamSynchronize or item() is the host waiting on the GPU), then three timed runs in one launch, each one's
# prefill seconds printed (the first run's allocations, or every run's?). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
nano_part host SPMD_PDL=0 -- bench.profile=true bench.profile_phase=prefill bench.profile_top=14
nano_summary host; grep -A32 "^profile of" "$OUT/host.txt" | cut -c1-150
nano_part repeats -- bench.repeats=3
python3 - "$OUT/repeats.json" <<'PY'
import json, sys
for run in json.load(open(sys.argv[1]))["cases"][0]["runs"]:
    print(f"  run: {run['output_tok_s']:.0f} tok/s, prefill {run['prefill_s']:.3f} s, decode step "
          f"{run['decode_median_step_s'] * 1e3:.2f} ms")
PY
rm -rf "$OUT"/*.json "$OUT"/*.run
