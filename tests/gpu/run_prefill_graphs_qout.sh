#!/usr/bin/env bash
# One 1-GPU device call (~3 min), session 27: the positioning kernels write q straight into a prefill graph's static
# attention input (q_out of rotary_store_kv and qk_norm_rotary_store_kv), so the 1.16 ms a step of q copies
# (run_prefill_graphs_profile.sh: 44 us a layer at 8192 tokens) is gone. Their kernel tests in bf16, the prefill-graph
# job tests (graphs against eager), then Qwen3-0.6B's 256 x 512 prefill through the graphs (against 154.5 ms TTFT,
# 17.7 ms a step before). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 150 tests/kernels/test_rotary_store_kv.py tests/kernels/test_qk_norm_rotary.py \
  tests/test_prefill_graphs.py
part grid 90 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=grid 'bench.grid_batch_sizes=[256]' \
  'bench.input_lens=[512]' 'bench.output_lens=[1]' bench.repeats=3 bench.output="$OUT/grid.json"
grep -E "^grid|host-bound|prefill CUDA|Error" "$OUT/grid.txt" | cut -c1-140
python3 -c "
import json, statistics
p = json.load(open('$OUT/grid.json'))['cases'][0]['prefill']
print(f\"prefill steps {len(p['step_s'])}, median {statistics.median(p['step_s']) * 1e3:.1f} ms whole, \"
      f\"{statistics.median(p['launch_s']) * 1e3:.1f} to the launch\")"
rm -rf "$OUT"/*.run "$OUT"/*.json
