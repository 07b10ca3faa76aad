#!/usr/bin/env bash
# One 1-GPU device call (~6 min), session 35: MLA decode's absorbed products (q_nope by W_UK, the attended latent by
# W_UV) in kernels/head_gemm.py instead of torch.bmm (SPMD_MLA_HEAD_GEMM, on): its tests in bf16 with the latent
# store's (k_pe read from its own tensor, session 34, first on a card here) and the MLA kernel path's, DeepSeek-V2-Lite
# against transformers with it on, then decode @1k bs1 / bs8 / bs16 off and on (PRESETS for more MLA models).
# Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part kernels 150 tests/kernels/test_head_gemm.py tests/kernels/test_pdl.py tests/kernels/test_kv_store.py \
  tests/kernels/test_fp8_kv.py tests/kernels/test_mla_decode.py tests/test_mla_triton_path.py
check_part 150 --model dsv2lite --layouts 1x1 --out /tmp/chk_mla_head_gemm
for preset in ${PRESETS:-deepseek-v2-lite}; do
  for on in 0 1; do
    BATCHES=${BATCHES:-1,8,16} LIMIT=100 decode_part "${preset}_$on" "$preset" SPMD_MLA_HEAD_GEMM=$on -- bench.repeats=2
  done
done
rm -rf "$OUT"/*.json "$OUT"/*.run
