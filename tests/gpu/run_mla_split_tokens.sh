#!/usr/bin/env bash
# One 1-GPU device call (~6 min), for session 37: MLA decode with more, shorter splits. Session 36 timed DeepSeek-V2-
# Lite bs1 @1k at 128 tokens a split (the shared rule's minimum: 8 splits) 322 tok/s in one call and at 64 / 32 (16 /
# 32 splits) 332 / 331 in the next (run_bs1_splits.sh): +3%, across calls. Here interleaved twice in one call, bs1 /
# bs8 / bs16 / bs64, 128 against 64 (SPMD_DECODE_MIN_SPLIT_TOKENS reaches MLA alone on an MLA model); PRESETS adds
# MLA models. If 64 wins everywhere, give MLA its own minimum (mla_decode's choose_num_splits call). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
for preset in ${PRESETS:-deepseek-v2-lite}; do
  for run in 1 2; do
    for tokens in 128 64; do
      BATCHES=1,8,16,64 LIMIT=90 decode_part "${preset}_${tokens}_$run" "$preset" \
        SPMD_DECODE_MIN_SPLIT_TOKENS=$tokens -- bench.repeats=2
    done
  done
done
rm -rf "$OUT"/*.json "$OUT"/*.run
