#!/usr/bin/env bash
# One 1-GPU device call (~6 min), session 37: decode_settings.SHORT_SPLIT_TOKENS, shorter KV splits (64 tokens)
# where splits of MIN_SPLIT_TOKENS (128) give fewer programs than SMs. Decode @1k at bs1 / 4 / 8 with it (64) and
# without (128), one model after another, the two back to back: GQA (Llama-3-8B, Qwen3-8B, Qwen3-0.6B) and MLA
# (DeepSeek-V2-Lite, where run_mla_split_tokens.sh found bs1 +3% at 64 and bs16 -0.7%). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
for preset in ${PRESETS:-llama-3-8b qwen3-8b qwen3-0.6b deepseek-v2-lite}; do
  for tokens in 128 64; do
    BATCHES=${BATCHES:-1,4,8} LIMIT=90 decode_part "${preset}_short_$tokens" "$preset" \
      SPMD_DECODE_SHORT_SPLIT_TOKENS=$tokens -- bench.repeats=2
  done
done
rm -rf "$OUT"/*.json "$OUT"/*.run
