#!/usr/bin/env bash
# One 1-GPU device call (~6 min), session 35: MLA's new tokens positioned and cached in one kernel
# (kernels/mla_rope_store.py, SPMD_MLA_ROPE_STORE, on): q_pe's rotary, the latent's norm and k_pe's rotary into the
# cache, where rms_norm, the rotary and store_latent took three launches a layer. Its tests in bf16 (bit for bit the
# three kernels, bf16 and float8 caches; the DeepSeek attention layers fused against unfused, bit for bit on a card)
# with the kernels whose shared code it took (rms_norm_values, rotate_pairs), DeepSeek-V2-Lite against transformers
# with it on, then decode @1k off and on (PRESETS, BATCHES for more). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part kernels 150 tests/kernels/test_mla_rope_store.py tests/kernels/test_rotary.py tests/kernels/test_rmsnorm.py \
  tests/kernels/test_qk_norm_rotary.py tests/kernels/test_rotary_store_kv.py tests/kernels/test_push_all_reduce.py \
  tests/kernels/test_kv_store.py tests/kernels/test_pdl.py tests/test_mla_triton_path.py
check_part 150 --model dsv2lite --layouts 1x1 --out /tmp/chk_mla_rope_store
for preset in ${PRESETS:-deepseek-v2-lite}; do
  for on in 0 1; do
    BATCHES=${BATCHES:-1,16,64} LIMIT=100 decode_part "${preset}_$on" "$preset" SPMD_MLA_ROPE_STORE=$on -- \
      bench.repeats=2
  done
done
rm -rf "$OUT"/*.json "$OUT"/*.run
