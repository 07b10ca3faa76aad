#!/usr/bin/env bash
# One 2-GPU device call (~2.5 min), session 28: run_prefill_graphs_dpa2.sh's DeepSeek-V2-Lite nano-vllm at dp2 + DP
# attention (64 sequences a rank) gained 6455 -> 8890 tok/s with prefill graphs in every step some rank prefills, but
# its median TTFT went 1111 -> 2354 ms. Where rank 0's prefill steps' time goes, step by step, with and without.
# Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
for graphs in true false; do
  part "nano_$graphs" 120 torchrun --nproc-per-node 2 -m spmd_infer.bench bench.preset=deepseek-v2-lite \
    bench.workload=nano_vllm parallel.dp=2 parallel.dp_attention=true scheduler.max_num_seqs=64 \
    runtime.prefill_graphs=$graphs bench.output="$OUT/nano_$graphs.json"
  echo "runtime.prefill_graphs=$graphs"; grep -E "^nano_vllm|Error" "$OUT/nano_$graphs.txt" | cut -c1-120
  python3 - "$OUT/nano_$graphs.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["cases"][0]
p = c["prefill"]
print("ttft", {k: round(v, 3) for k, v in c["ttft_s"].items()})
print("prefill step ms", [round(s * 1e3, 1) for s in p["step_s"][:40]])
print("launch ms", [round(s * 1e3, 1) for s in p["launch_s"][:40]])
PY
done
rm -rf "$OUT"/*.run "$OUT"/*.json
