#!/usr/bin/env bash
# One 1-GPU device call (~4 min), session 18: float8 linear layers' prefill through cuBLAS (fp8_linear.takes_cublas)
# on an MLA + MoE model and against bf16 linear layers on nano-vllm. DeepSeek-V2-Lite decode bs256 / bs64 @1k with
# float8 linear layers and experts (session 18's second call, before cuBLAS: 12.1 / 8.7 ms a step; its TTFT is the
# 256 x 1k prefill); its transformers check from the block-float8 copy (second call: 0 exact + 13 within top-5 +
# 3 outside with float8 activations; 1 + 15 + 0 with the weights widened); nano-vllm (Qwen3-0.6B) with bf16 linear
# layers, against float8's 23.1k tok/s in session 18's sixth call. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
LIMIT=90 decode_part decode_dsv2 deepseek-v2-lite -- model.expert_dtype=fp8 model.linear_dtype=fp8
grep -E "^case" "$OUT/decode_dsv2.txt" | cut -c1-140
check_part 150 --model dsv2lite --layouts 1x1 --out /tmp/chk_mla \
  --block-fp8
nano_part nano_bf16
rm -rf "$OUT"/*.run "$OUT"/*.json
