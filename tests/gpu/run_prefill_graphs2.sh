#!/usr/bin/env bash
# One 1-GPU device call (~4 min), after run_prefill_graphs.sh (session 27): the prefill-graph tests with their
# failures' lines, then Llama-3-8B with graphs for its host-bound step sizes only (HOST_BOUND_LAYER_WORK: buckets up
# to 1024 tokens): its 8 x 2048 prefill as eager as before (16384-token steps), its startup, and 16 x 64 (one
# 1024-token step) through a graph against eager.
# Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
part tests 240 python3 -m pytest -q -n 6 --tb=line tests/test_prefill_graphs.py tests/test_rotary_store_path.py
tail -1 "$OUT/tests.txt"; grep -E "^/|^E |Error|assert" "$OUT/tests.txt" | head -30 | cut -c1-300
for on in true false; do
  part "llama_$on" 200 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=grid \
    'bench.grid_batch_sizes=[8,16]' 'bench.input_lens=[2048,64]' 'bench.output_lens=[1]' bench.repeats=2 \
    scheduler.max_num_batched_tokens=16384 runtime.prefill_graphs=$on bench.output="$OUT/llama_$on.json"
  echo "llama-3-8b prefill_graphs=$on"
  grep -E "^grid|^startup|CUDA graphs|run eagerly|Error" "$OUT/llama_$on.txt" | cut -c1-200
done
rm -rf "$OUT"/*.run "$OUT"/*.json
