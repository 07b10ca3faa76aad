#!/usr/bin/env bash
# One 1-GPU device call (~2 min), after run_prefill_profile_host.sh (session 27): Qwen3-0.6B's ~8k-token prefill
# steps take 26 ms of wall for 14.7 ms of kernels, the GPU waiting on the host. Where the host's time goes by part,
# timed plainly (tests/gpu/time_step_parts.py), for the grid case and nano-vllm's protocol, then what one launch
# costs the host (tests/gpu/bench_launch_path.py). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
part grid 120 python3 tests/gpu/time_step_parts.py bench.preset=qwen3-0.6b bench.workload=grid \
  'bench.grid_batch_sizes=[256]' 'bench.input_lens=[512]' 'bench.output_lens=[1]' bench.repeats=2 \
  bench.output="$OUT/grid.json"
grep -E "^grid|host-bound|^PARTS|^  |^LAUNCH" "$OUT/grid.txt" | grep -v "^  grid" | cut -c1-130
part nano 120 python3 tests/gpu/time_step_parts.py bench.preset=qwen3-0.6b bench.workload=nano_vllm \
  bench.output="$OUT/nano.json"
grep -E "^nano|host-bound|^PARTS|^  [a-z ]" "$OUT/nano.txt" | cut -c1-130
part launch 60 python3 tests/gpu/bench_launch_path.py
grep -E "^---|^LAUNCH" "$OUT/launch.txt"
rm -rf "$OUT"/*.run
