#!/usr/bin/env bash
# One 1-GPU device call (~3 min): where a slow prefill spends its time. Qwen3-0.6B's nano-vllm prefill (18 steps of
# ~8k tokens) took 0.30-0.36 s in most runs but 0.56-0.69 s in some (session 22, H200: single-run launches and one
# run in three of a repeated one). Five runs in each of two launches, every run's prefill steps printed in ms
# (runs[].prefill_step_s): one slow step (a compile, an allocation, a collection) or all of them slower (clocks,
# host). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
for launch in 1 2; do
  nano_part "nano_$launch" -- bench.repeats=5
  python3 - "$OUT/nano_$launch.json" <<'PY'
import json, sys
case = json.load(open(sys.argv[1]))["cases"][0]
for k, run in enumerate(case["runs"]):
    steps = " ".join(f"{s * 1e3:.0f}" for s in run["prefill_step_s"])
    print(f"  run {k}: prefill {run['prefill_s']:.3f} s, steps (ms): {steps}")
PY
done
rm -rf "$OUT"/*.json "$OUT"/*.run
