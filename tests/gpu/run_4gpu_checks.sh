#!/usr/bin/env bash
# One 4-GPU device call (<= 10 min) for the correctness runs of issues 2 and 3: tiny and ~1B random Llama
# dp2 x tp2 vs transformers, DeepSeek-V2-Lite-shaped MLA+MoE dp2 x tp2 and dp4 with DP attention vs
# transformers (bf16, top-k logprob rule), and the full V2-Lite KV capacity dp4 (DP attention) vs tp4.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
part tiny 80 python3 tests/gpu/check_vs_transformers.py --model tiny --layouts 1x1 2x2 --out /tmp/chk
grep -E "RESULT|Error" "$OUT/tiny.txt"
part dsv2lite 200 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 2x2 4x1 --num-prompts 8 \
  --out /tmp/chk --extra parallel.dp_attention=true model.max_model_len=4096
grep -E "RESULT|OUTSIDE|Error" "$OUT/dsv2lite.txt" | head
echo "=== kv capacity"
NGPU=4 SKIP_KERNELS=1 bash tests/gpu/run_kv_capacity.sh
part onebill 150 python3 tests/gpu/check_vs_transformers.py --model 1b --layouts 1x1 2x2 --out /tmp/chk
grep -E "RESULT|OUTSIDE|Error" "$OUT/onebill.txt"
