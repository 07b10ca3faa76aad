#!/usr/bin/env bash
# One 4-GPU device call (~6 min): session 7's decode defaults (programmatic dependent launch on every Triton kernel,
# skinny_gemm for 16-64 MB weights, rotary + KV store in one kernel, chunked greedy argmax) were checked against
# transformers at 1x1 only. Here with tensor-parallel all-reduces and the DP exchange around them, in CUDA graphs:
# the 1.1B Llama at 1x4 and 2x2 with every weight through skinny_gemm and the fused input norm (SPMD_SKINNY_MIN_MB=0
# SPMD_NORM_QKV=1), Qwen3 at 2x2, DeepSeek-V2-Lite at 2x2 and 4x1 with DP attention.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
check() { local name=$1 limit=$2; shift 2
  part $name $limit "$@" --num-prompts 8 --out /tmp/chk_$name
  grep -E "RESULT|OUTSIDE|Error" "$OUT/$name.txt" | head -4; }
check llama1b_tp 150 env SPMD_SKINNY_MIN_MB=0 SPMD_NORM_QKV=1 python3 tests/gpu/check_vs_transformers.py --model 1b \
  --layouts 1x4 2x2
check qwen3_2x2 120 python3 tests/gpu/check_vs_transformers.py --model qwen3 --layouts 2x2
check dsv2lite_dpattn 200 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 2x2 4x1 \
  --extra parallel.dp_attention=true model.max_model_len=4096
rm -rf "$OUT"/*.run
