#!/usr/bin/env bash
# One 1-GPU device call (~5 min), session 36: decode attention's split count at batch 1 inside the engine's chain of
# programmatic dependent launches, where a reduce launch follows every split one (the split rule was tuned on the
# kernel alone: tune_decode_attention.py). Decode @1k bs1 with SPMD_DECODE_MIN_SPLIT_TOKENS 128 (the default: 8
# splits at 1k), 512 (2) and 1024 (1 split, no reduce) for Llama-3-8B (GQA) and DeepSeek-V2-Lite (MLA; the same rule).
# Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
for preset in ${PRESETS:-llama-3-8b deepseek-v2-lite}; do
  for tokens in 128 512 1024; do
    BATCHES=1 LIMIT=80 decode_part "${preset}_$tokens" "$preset" SPMD_DECODE_MIN_SPLIT_TOKENS=$tokens -- \
      bench.repeats=3
  done
done
rm -rf "$OUT"/*.json "$OUT"/*.run
