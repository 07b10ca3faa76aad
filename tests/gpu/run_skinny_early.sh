#!/usr/bin/env bash
# One 1-GPU device call (~6 min), session 36: small skinny_gemm programs fetch up to 32 KB of their weight slice
# before their PDL wait instead of one K step (SPMD_SKINNY_EARLY_KB, skinny_gemm.early_k_depth; Qwen3-0.6B's
# projections, whose ramps are most of its bs1 step: run_moe_bs1_profile.sh, run_graph_replay.sh). Its kernel tests
# in bf16, Qwen3 against transformers with it on, then Qwen3-0.6B decode @1k bs1 / bs16 on (32) and off (0),
# interleaved twice, and nano-vllm over the float8 cache on and off. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part kernels 150 tests/kernels/test_skinny_gemm.py tests/kernels/test_pdl.py tests/kernels/test_qkv_rope_store.py
check_part 120 --model qwen3 --layouts 1x1 --out /tmp/chk_early
for run in 1 2; do
  for kb in 32 0; do
    BATCHES=1,16 LIMIT=90 decode_part "early${kb}_$run" qwen3-0.6b SPMD_SKINNY_EARLY_KB=$kb -- bench.repeats=2
  done
done
for kb in 32 0; do
  nano_part "nano_early$kb" SPMD_SKINNY_EARLY_KB=$kb -- cache.dtype=fp8
done
rm -rf "$OUT"/*.json "$OUT"/*.run
