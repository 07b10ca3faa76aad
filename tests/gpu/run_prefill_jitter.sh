#!/usr/bin/env bash
# One 1-GPU device call (~3 min): where a slow prefill spends its time. Qwen3-0.6B's nano-vllm prefill (18 steps of
# ~8k tokens) took 0.30-0.36 s in most runs but 0.56-0.69 s in some (session 22, H200: single-run launches and one
# run in three of a repeated one). A suspect: a full garbage collection over the startup heap (~400k objects,
# 0.1-0.3 s of host time with no step launched), which runtime.freeze_gc (session 22, on by default) takes out of
# reach (it does: 0.266 s off, ~0.03 s on, yet slow runs stayed, uniformly slow step by step). Five runs with it
# off, then five with it on, each run's prefill steps in ms (runs[].prefill_step_s), its full collections
# (runs[].gc_full), the caching allocator's retries and cudaMalloc / cudaFree calls (runs[].allocator, session 26),
# each step's host time to its forward's launch (runs[].prefill_launch_s: a slow host shows there, a slow GPU in the
# rest) and the SM clock / power nvidia-smi sampled during it (every 100 ms). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw --format=csv,noheader,nounits -lms 100 > /tmp/clocks.csv &
sampler=$!
for freeze in false true; do
  nano_part "nano_freeze_$freeze" -- bench.repeats=5 runtime.freeze_gc=$freeze
  python3 - "$OUT/nano_freeze_$freeze.json" "$OUT/nano_freeze_$freeze.txt" /tmp/clocks.csv <<'PY'
import datetime as dt, json, re, statistics, sys
case = json.load(open(sys.argv[1]))["cases"][0]
# Each timed run's end and length from the log ("[date time,ms][rank0][...bench.run][INFO] NAME: N output tok/s, S s").
ends = [(dt.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f"), float(m[2])) for m in re.finditer(
    r"^\[([\d-]+ [\d:,]+)\]\S*bench\.run\S* nano_vllm.*: \d+ output tok/s, ([\d.]+) s$", open(sys.argv[2]).read(), re.M)]
samples = []
for line in open(sys.argv[3]):
    try:
        stamp, sm, watts = (v.strip() for v in line.split(","))
        samples.append((dt.datetime.strptime(stamp, "%Y/%m/%d %H:%M:%S.%f"), float(sm), float(watts)))
    except ValueError:
        pass
timed = ends[-len(case["runs"]):]  # the warm case's run comes first
for k, run in enumerate(case["runs"]):
    launches = run.get("prefill_launch_s") or [0.0] * len(run["prefill_step_s"])
    steps = " ".join(f"{s * 1e3:.0f}/{a * 1e3:.0f}" for s, a in zip(run["prefill_step_s"], launches))
    gc = run["gc_full"]
    clock = ""
    if k < len(timed):
        end, secs = timed[k]
        inside = [(sm, w) for t, sm, w in samples if end - dt.timedelta(seconds=secs) <= t <= end]
        if inside:
            clock = (f"; SM clock median {statistics.median(s for s, _ in inside):.0f} MHz (min "
                     f"{min(s for s, _ in inside):.0f}), power median {statistics.median(w for _, w in inside):.0f} W")
    alloc = run.get("allocator") or {}
    print(f"  run {k}: {run['output_tok_s']:.0f} tok/s, prefill {run['prefill_s']:.3f} s, full GC {gc['collections']} "
          f"in {gc['seconds']:.3f} s{clock}; allocator {alloc.get('retries')} retries, {alloc.get('device_allocs')} "
          f"cudaMalloc, {alloc.get('device_frees')} cudaFree; prefill steps, ms whole / to the launch: {steps}")
PY
done
kill "$sampler"
rm -rf "$OUT"/*.json "$OUT"/*.run
