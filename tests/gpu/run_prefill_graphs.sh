#!/usr/bin/env bash
# One 1-GPU device call (~6 min), session 27: prefill steps replayed as CUDA graphs between their attention layers
# (engine/prefill_graphs.py, runtime.prefill_graphs). Their tests and two models against transformers with them
# on (the default), then on / off: Qwen3-0.6B's host-bound prefill (256 x 512 tokens, 8192-token steps) and the
# nano-vllm protocol, and Llama-3-8B's GPU-bound 8 x 2048 prefill (MFU, startup). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 240 tests/test_prefill_graphs.py tests/test_rotary_store_path.py tests/test_qkv_fusion_path.py
for model in qwen3 1b; do check_part 240 --model $model --layouts 1x1; done
steps() {  # a case's prefill steps: median ms whole / to the launch, and the startup's graph capture
  python3 - "$1" <<'PY'
import json, statistics, sys
r = json.load(open(sys.argv[1]))
p = r["cases"][0]["prefill"]
print(f"  prefill steps {len(p['step_s'])}, median {statistics.median(p['step_s']) * 1e3:.1f} ms whole, "
      f"{statistics.median(p['launch_s']) * 1e3:.1f} to the launch; startup {r.get('startup', {})}"[:400])
PY
}
for on in true false; do
  part "grid_$on" 150 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=grid \
    'bench.grid_batch_sizes=[256]' 'bench.input_lens=[512]' 'bench.output_lens=[1]' bench.repeats=3 \
    runtime.prefill_graphs=$on bench.output="$OUT/grid_$on.json"
  echo "qwen3-0.6b prefill_graphs=$on"; grep -E "^grid|host-bound|prefill CUDA|Error" "$OUT/grid_$on.txt" | cut -c1-140
  steps "$OUT/grid_$on.json"
done
for on in true false; do
  nano_part "nano_$on" -- runtime.prefill_graphs=$on
  grep -E "prefill CUDA" "$OUT/nano_$on.txt" | cut -c1-140; steps "$OUT/nano_$on.json"
done
for on in true false; do
  part "llama_$on" 150 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=grid \
    'bench.grid_batch_sizes=[8]' 'bench.input_lens=[2048]' 'bench.output_lens=[1]' bench.repeats=2 \
    scheduler.max_num_batched_tokens=16384 runtime.prefill_graphs=$on bench.output="$OUT/llama_$on.json"
  echo "llama-3-8b prefill_graphs=$on"; grep -E "^grid|^startup|prefill CUDA|Error" "$OUT/llama_$on.txt" | cut -c1-160
done
rm -rf "$OUT"/*.run
