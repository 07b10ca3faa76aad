#!/usr/bin/env bash
# One 1-GPU device call (~7 min), session 34: decode attention asking L2 for the output projection's weights while
# its own few MB of KV reads leave HBM idle (kernels/l2_prefetch.py, SPMD_DECODE_L2_PREFETCH_BATCH / _MB; off by
# default until timed). Its kernel tests in bf16 (the output bit for bit the same with it on); Llama-3-8B decode @1k
# bs1 / bs8 / bs64 off and on (all 32 MiB of o_proj, then 16), interleaved, two runs a launch; Qwen3-8B and
# Qwen3-0.6B bs1 / bs8 off and on. (Session 19's prefetch was another thing: skinny_gemm asking for its own rows
# before its PDL wait, ~1.6 us ahead of use; this one runs during attention's ~7 us.) Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part kernels 120 tests/kernels/test_l2_prefetch.py tests/kernels/test_decode_attention.py tests/kernels/test_pdl.py
for run in 1 2; do
  for batch in 0 64; do
    BATCHES=1,8,64 LIMIT=100 decode_part "llama_${batch}_$run" llama-3-8b SPMD_DECODE_L2_PREFETCH_BATCH=$batch \
      -- bench.repeats=2
  done
done
BATCHES=1,8,64 LIMIT=100 decode_part llama_64_16mb llama-3-8b SPMD_DECODE_L2_PREFETCH_BATCH=64 \
  SPMD_DECODE_L2_PREFETCH_MB=16 -- bench.repeats=2
for preset in qwen3-8b qwen3-0.6b; do
  for batch in 0 8; do
    BATCHES=1,8 LIMIT=90 decode_part "${preset}_$batch" $preset SPMD_DECODE_L2_PREFETCH_BATCH=$batch -- bench.repeats=2
  done
done
rm -rf "$OUT"/*.json
