#!/usr/bin/env bash
# One 1-GPU device call (~3 min): where a slow prefill spends its time. Qwen3-0.6B's nano-vllm prefill (18 steps of
# ~8k tokens) took 0.30-0.36 s in most runs but 0.56-0.69 s in some (session 22, H200: single-run launches and one
# run in three of a repeated one). A suspect: a full garbage collection over the startup heap (~400k objects,
# 0.1-0.3 s of host time with no step launched), which runtime.freeze_gc (session 22, on by default) takes out of
# reach. Five runs with it off, then five with it on, each run's prefill steps in ms (runs[].prefill_step_s) and its
# full collections (runs[].gc_full). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
for freeze in false true; do
  nano_part "nano_freeze_$freeze" -- bench.repeats=5 runtime.freeze_gc=$freeze
  python3 - "$OUT/nano_freeze_$freeze.json" <<'PY'
import json, sys
case = json.load(open(sys.argv[1]))["cases"][0]
for k, run in enumerate(case["runs"]):
    steps = " ".join(f"{s * 1e3:.0f}" for s in run["prefill_step_s"])
    gc = run["gc_full"]
    print(f"  run {k}: {run['output_tok_s']:.0f} tok/s, prefill {run['prefill_s']:.3f} s, full GC {gc['collections']} "
          f"in {gc['seconds']:.3f} s; prefill steps (ms): {steps}")
PY
done
rm -rf "$OUT"/*.json "$OUT"/*.run
