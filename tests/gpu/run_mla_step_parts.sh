#!/usr/bin/env bash
# One 1-GPU device call (~3 min), session 29: DeepSeek-V2-Lite's 8 x 64 prefill through prefill graphs took 11.1 ms
# a step under the profiler for 6.4 ms of kernels (PDL off), 53% of its time before the forward's launch. Where the
# host's time goes by part (tests/gpu/time_step_parts.py: the piece replays, MLA's eager attention between them, its
# group plans and expansions), graphs on and off, and Qwen3-30B-A3B's (GQA attention) through graphs beside it.
# Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
for spec in deepseek-v2-lite:true deepseek-v2-lite:false qwen3-30b-a3b:true; do
  preset=${spec%:*} graphs=${spec#*:} name=${spec/:/_}
  part "$name" 150 python3 tests/gpu/time_step_parts.py bench.preset="$preset" bench.workload=grid \
    'bench.grid_batch_sizes=[8,64]' 'bench.input_lens=[64]' 'bench.output_lens=[1]' bench.repeats=3 \
    runtime.prefill_graphs=$graphs bench.output="$OUT/$name.json"
  echo "--- $preset runtime.prefill_graphs=$graphs"
  grep -E "^grid|host-bound|^PARTS|^  [a-z ]|compiled during|Error" "$OUT/$name.txt" | grep -v "^  grid" | cut -c1-130
done
rm -rf "$OUT"/*.run "$OUT"/*.json
