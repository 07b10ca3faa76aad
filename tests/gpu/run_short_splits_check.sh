#!/usr/bin/env bash
# One 1-GPU device call (~4 min), session 37: the checks against transformers under the short-split rule
# (decode_settings.SHORT_SPLIT_TOKENS, on by default): DeepSeek-V2-Lite (MLA) and Qwen3 (GQA) in bf16, whose 16
# prompts' short contexts leave few programs, so that their decode launches take the shorter splits. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
check_part 150 --model dsv2lite --layouts 1x1 --out /tmp/chk_short_mla
check_part 120 --model qwen3 --layouts 1x1 --out /tmp/chk_short_gqa
rm -rf "$OUT"/*.run
