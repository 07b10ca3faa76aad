#!/usr/bin/env bash
# One 1-GPU device call (~3 min), session 14: MLA decode rescaling its accumulators only when a row's maximum grows
# by more than 2^8 (SPMD_MLA_LAZY_RESCALE=1) against every tile (=0): the kernel at its default tile over a bf16
# latent cache, on / off twice each, interleaved, and over a float8 one, then the MLA kernel tests with it on.
# Carry [".whl"]. Needs 5febbf1: the switch was removed after this call (H200: bf16 105 / 44 / 52 / 12-13 us at
# bs256 / bs64 / bs32 / bs1 on, 105 / 43 / 51 / 12 off; float8 121 / 38 / 55 / 11 on, 120 / 38 / 55 / 11 off).
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
for run in bf16:1a bf16:0a bf16:1b bf16:0b fp8:1a fp8:0a; do
  kv=${run%:*} lz=${run#*:}
  part "tune_${kv}_$lz" 60 env SPMD_MLA_LAZY_RESCALE=${lz:0:1} python3 tests/gpu/tune_mla_decode.py \
    $([[ $kv == fp8 ]] && echo --fp8) --default-splits --default-config --shapes bs256 bs64 bs32 bs1
  echo "$kv lazy ${lz:0:1}: $(grep -E '^  [0-9.]+ ' "$OUT/tune_${kv}_$lz.txt" | head -1)"
done
test_part mla_tests 90 tests/kernels/test_mla_decode.py tests/kernels/test_fp8_kv.py
