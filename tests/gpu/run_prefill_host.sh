#!/usr/bin/env bash
# One 1-GPU device call (~3 min), after session 26's run_prefill_jitter.sh found Qwen3-0.6B's ~8k-token prefill steps
# spending 14-24 ms of host time before their forward is launched (nearly the whole step: the GPU waits on the
# host). Where that host time goes: the host syncs inside prefill steps (find_step_syncs.py over a prefill-only
# case: a sync inside the eager forward would look the same), then the same case under cProfile, the functions with
# the most host time of their own and the forward's callees by cumulative time. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
CASE=(bench.preset=qwen3-0.6b bench.workload=grid 'bench.grid_batch_sizes=[256]' 'bench.input_lens=[512]'
  'bench.output_lens=[1]' bench.repeats=3)
part syncs 120 python3 tests/gpu/find_step_syncs.py "${CASE[@]}" bench.output="$OUT/syncs.json"
grep -vE "^\[|^W1|warn" "$OUT/syncs.txt" | tail -15
part profile 150 python3 -m cProfile -o /tmp/prefill.prof -m spmd_infer.bench "${CASE[@]}" \
  bench.output="$OUT/profile.json"
grep -E "^grid|launch|Error" "$OUT/profile.txt" | cut -c1-110
python3 - "$OUT/profile.json" <<'PY'
import json, pstats, sys
prefill = json.load(open(sys.argv[1]))["cases"][0]["prefill"]
print("prefill steps, ms whole / to the launch:",
      " ".join(f"{s * 1e3:.0f}/{a * 1e3:.0f}" for s, a in zip(prefill["step_s"], prefill["launch_s"])))
stats = pstats.Stats("/tmp/prefill.prof")
print("--- most host time of their own")
stats.sort_stats("tottime").print_stats(25)
print("--- the forward's callees, cumulative")
stats.sort_stats("cumulative").print_callees("forward_logits")
PY
rm -rf "$OUT"/*.run
