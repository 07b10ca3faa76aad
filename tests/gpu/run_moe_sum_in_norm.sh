#!/usr/bin/env bash
# One 1-GPU device call (~4 min; PRESETS for more models), session 34: a MoE layer's slot products summed inside the
# next RMSNorm's kernel (SPMD_MOE_SUM_IN_NORM, kernels/moe_sum_norm.py; off until timed) instead of by fused_moe's
# sum kernel, one launch a layer fewer. Its tests in bf16 and fp32 (the kernel bit for bit the two kernels it
# replaces; every MoE block kind through the norm its decoder layer feeds), then decode @1k bs1 / bs8 off and on.
# Next: DeepSeek-V2-Lite and Qwen1.5-MoE (PRESETS), the checks against transformers with it on, and bs64 / bs256.
# Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
# (With MLA's latent store reading k_pe from its own tensor, session 34's last change, not yet run on a card.)
test_part kernels 140 tests/kernels/test_moe_sum_norm.py tests/kernels/test_fused_moe.py tests/test_moe_sum_in_norm.py \
  tests/test_qwen2_moe.py tests/kernels/test_kv_store.py tests/kernels/test_fp8_kv.py tests/test_mla_triton_path.py
for preset in ${PRESETS:-qwen3-30b-a3b}; do
  for on in 0 1; do
    BATCHES=${BATCHES:-1,8} LIMIT=80 decode_part "${preset}_$on" "$preset" SPMD_MOE_SUM_IN_NORM=$on -- bench.repeats=2
  done
done
rm -rf "$OUT"/*.json "$OUT"/*.run
