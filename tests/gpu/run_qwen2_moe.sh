#!/usr/bin/env bash
# One 2-GPU device call (~6 min), written in session 30 (no device time left to run it): Qwen2-MoE on cards for the
# first time. Qwen1.5-MoE-A2.7B's shape (4 layers, random weights) against transformers in bf16 at tp1, tp2 and dp2
# with DP attention (its gated shared expert inside the MoE's partial sums, prefill graphs on), then the
# qwen1.5-moe-a2.7b preset's decode at bs1 / bs64 and the nano-vllm protocol on one GPU. On a 1-GPU host (session 31
# was lent only those for a while) the check runs at tp1 alone, after the MoE jobs through prefill graphs against the
# eager prefill (its qwen2moe-mixed case). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
if (( $(nvidia-smi -L | wc -l) >= 2 )); then
  check_part 240 --model qwen2moe --layouts 1x1 1x2 2x1 --extra parallel.dp_attention=true --out /tmp/check_qwen2moe
else
  test_part moe_graphs 150 -vv --tb=short tests/test_prefill_graphs.py -k "moe_and_mla_jobs"
  check_part 150 --model qwen2moe --layouts 1x1 --out /tmp/check_qwen2moe
fi
part decode 100 python3 -m spmd_infer.bench bench.preset=qwen1.5-moe-a2.7b bench.workload=decode \
  'bench.batch_sizes=[64,1]' bench.context=1024 bench.output=$OUT/decode.json
grep -E "^device|^decode bs|Error" "$OUT/decode.txt" | cut -c1-140
part nano 100 python3 -m spmd_infer.bench bench.preset=qwen1.5-moe-a2.7b bench.workload=nano_vllm \
  bench.output=$OUT/nano.json
grep -E "^nano_vllm|Error|compiled during" "$OUT/nano.txt" | cut -c1-150
nano_summary nano
rm -rf "$OUT"/*.run
