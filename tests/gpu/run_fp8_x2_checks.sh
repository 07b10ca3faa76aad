#!/usr/bin/env bash
# One 2-GPU device call (~7 min), session 19: float8 checkpoints (128 x 128 blocks, --block-fp8) against transformers
# across ranks, on NCCL: every earlier float8 check ran at 1x1. Qwen3 at tp2 (1x2) and dp2 (2x1) with float8
# activations (1x1, session 18: 0 exact + 15 within top-5 + 1 outside), and at tp2 with the weights widened
# (SPMD_FP8_ACT=model: the dequantized model exactly, so sharded loading alone); DeepSeek-V2-Lite at 2x1 with DP
# attention (routed experts and the dense MLP sharded over both ranks; its 10944-wide dense MLP splits inside a
# block) with widened weights (1x1, session 18: 1 exact + 15 within top-5 + 0 outside). Then DeepSeek-V2-Lite decode
# with float8 linear layers and experts on one GPU (session 18: bs256 / bs64 12.2 / 8.7 ms). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
check() { local name=$1 limit=$2; shift 2
  part "$name" "$limit" "$@" --num-prompts 8 --out "/tmp/chk_$name" --block-fp8
  grep -E "RESULT|OUTSIDE|Error" "$OUT/$name.txt" | head -6; }
check qwen3_fp8 150 python3 tests/gpu/check_vs_transformers.py --model qwen3 --layouts 1x2 2x1
check qwen3_widened 100 env SPMD_FP8_ACT=model python3 tests/gpu/check_vs_transformers.py --model qwen3 --layouts 1x2
check dsv2lite_widened 200 env SPMD_FP8_ACT=model python3 tests/gpu/check_vs_transformers.py --model dsv2lite \
  --layouts 2x1 --extra parallel.dp_attention=true model.max_model_len=4096
CUDA_VISIBLE_DEVICES=0 decode_part dsv2_fp8 deepseek-v2-lite -- model.expert_dtype=fp8 model.linear_dtype=fp8
rm -rf "$OUT"/*.run "$OUT"/*.json
