#!/usr/bin/env bash
# One 1-GPU device call (~8 min), for session 15: MLA decode over a float8 latent cache with its dots in fp16
# (SPMD_MLA_FP8_F16_DOTS=1; session 14 built it offline: the SASS loses its 144 F2F.BF16.F16, which ncu counted as
# 17.5% of the float8 kernel's instructions and 19% of its stall samples). The float8 kernel tests with it on; the
# kernel at its tile on / off, twice each, interleaved, then a tile sweep with it on; DeepSeek-V2-Lite against
# transformers reading float8-rounded latents with it on; decode bs256 / bs64 @1k, float8 on / off and bf16.
# To beat: float8 120 us at bs256 (bf16 104), engine step 14.4 ms (bf16 14.0). Last, DeepSeek-V2-Lite (4 layers)
# loaded from a block-float8 copy of itself (DeepSeek-V3's release format, session 14: CPU-tested) against
# transformers on the same values dequantized. Carry [".whl"]. If it outruns one call: PARTS=kernels, then
# PARTS=engine (default: both).
set -uo pipefail
want() { [[ ${PARTS:-all} == all || " $PARTS " == *" $1 "* ]]; }
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
if want kernels; then
test_part tests 120 SPMD_MLA_FP8_F16_DOTS=1 tests/kernels/test_fp8_kv.py tests/kernels/test_mla_decode.py
# The bf16 kernel after session 14's compile-time cache offsets (offline: 552 -> 499 instructions a trip); before
# them 104-105 / 43-44 / 51-52 / 12-13 us at bs256 / bs64 / bs32 / bs1: revert ce5f456's kernel change if slower.
part bf16_kernel 60 python3 tests/gpu/tune_mla_decode.py --default-splits --default-config --shapes bs256 bs64 bs32 bs1
echo "bf16: $(grep -E '^  [0-9.]+ ' "$OUT/bf16_kernel.txt" | head -1)"
for run in 1a 0a 1b 0b; do
  part "kernel_$run" 60 env SPMD_MLA_FP8_F16_DOTS=${run:0:1} python3 tests/gpu/tune_mla_decode.py --fp8 \
    --default-splits --default-config --shapes bs256 bs64 bs32 bs1
  echo "fp16 dots ${run:0:1}: $(grep -E '^  [0-9.]+ ' "$OUT/kernel_$run.txt" | head -1)"
done
part tiles 150 env SPMD_MLA_FP8_F16_DOTS=1 python3 tests/gpu/tune_mla_decode.py --fp8 --default-splits \
  --shapes bs256 bs64 bs32 bs1
grep -A6 "^best over" "$OUT/tiles.txt"
fi
if want engine; then
part check 120 env SPMD_MLA_FP8_F16_DOTS=1 python3 tests/gpu/check_vs_transformers.py --model dsv2lite \
  --layouts 1x1 --out /tmp/chk --extra cache.dtype=fp8
grep -E "^reference|RESULT|OUTSIDE|Error" "$OUT/check.txt" | head -6
for run in fp8:1 fp8:0 auto:0; do
  kv=${run%:*} f16=${run#*:}
  decode_part "decode_${kv}_$f16" deepseek-v2-lite SPMD_MLA_FP8_F16_DOTS=$f16 -- cache.dtype=$kv
done
part check_blockfp8 150 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 1x1 \
  --out /tmp/chk_fp8w --block-fp8 --extra model.expert_dtype=model  # the dequantizing path (auto: float8 experts)
grep -E "^engine|RESULT|OUTSIDE|Error" "$OUT/check_blockfp8.txt" | head -6
fi
rm -rf "$OUT"/*.run "$OUT"/*.json
