#!/usr/bin/env bash
# One 1-GPU device call (~2.5 min), session 36: are small-batch decode steps bound by the host? The decode graphs
# replayed back to back (tests/gpu/time_graph_replay.py) beside the benchmark's step time, for Qwen3-0.6B (bs1 1.1 ms
# a step for 0.29 ms of weight bytes at the copy rate; RMSNorm and SiLU cost nothing: run_fixed_cost_bound.sh) and
# Llama-3-8B. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
for preset in qwen3-0.6b llama-3-8b; do
  part "replay_$preset" 150 python3 tests/gpu/time_graph_replay.py bench.preset=$preset bench.workload=decode \
    'bench.batch_sizes=[1,16,64]' bench.context=1024 bench.output="$OUT/replay_$preset.json"
  grep -E "^decode bs|^REPLAY|Error" "$OUT/replay_$preset.txt" | cut -c1-110
done
rm -rf "$OUT"/*.run "$OUT"/*.json
