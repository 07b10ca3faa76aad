#!/usr/bin/env bash
# One 1-GPU device call (~2 min), session 31: Qwen1.5-MoE-A2.7B's eager 8192-token prefill steps (64 x 1024) spent
# 48 of each 76 ms on the host before their forwards were launched, 2 ms a layer against Qwen3-0.6B's 0.7 (session
# 27). Where that host time goes, by part (tests/gpu/time_step_parts.py, with the MoE block, routing and fused_moe
# rows), at the default 8192-token steps and at 2048 (inside the prefill graphs). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
for tokens in 8192 2048; do
  part "grid_$tokens" 150 python3 tests/gpu/time_step_parts.py bench.preset=qwen1.5-moe-a2.7b bench.workload=grid \
    'bench.grid_batch_sizes=[64]' 'bench.input_lens=[1024]' 'bench.output_lens=[1]' bench.repeats=2 \
    scheduler.max_num_batched_tokens=$tokens bench.output="$OUT/grid_$tokens.json"
  grep -E "^grid|host-bound|^PARTS|^  " "$OUT/grid_$tokens.txt" | grep -v "^  grid" | cut -c1-130
done
rm -rf "$OUT"/*.run
