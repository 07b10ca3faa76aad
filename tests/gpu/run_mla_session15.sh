#!/usr/bin/env bash
# One 1-GPU device call (~8 min), session 15, after run_mla_f16_dots.sh PARTS=kernels (float8 MLA dots in fp16:
# 119 vs 122-123 us at bs256, its own tile (16, (32, 64), 4, 1) 114, both now defaults). 1) An A/B of the bf16 MLA
# kernel with session 14's compile-time cache offsets (ce5f456, as it is) against runtime strides (ab_strides.patch
# applied to a copy of the tree), interleaved twice: the first call this session timed it at 115 us at bs256
# where session 14 had 104 before the change. 2) The bf16 tile sweep as it is now. 3) The engine: DeepSeek-V2-Lite
# against transformers over a float8 latent cache (fp16 dots on), decode bs256 / bs64 @1k float8 dots on / off and
# bf16, and DeepSeek-V2-Lite loaded from a block-float8 copy of itself against transformers. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
ab_parts bf16 tests/gpu/ab_strides.patch 60 python3 tests/gpu/tune_mla_decode.py --default-splits --default-config \
  --shapes bs256 bs64 bs32 bs1
for run in new1 old1 new2 old2; do echo "bf16 $run: $(grep -E '^  [0-9.]+ ' "$OUT/bf16_$run.txt" | head -1)"; done
part bf16_tiles 120 python3 tests/gpu/tune_mla_decode.py --default-splits --shapes bs256 bs64 bs32 bs1
grep -A4 "^best over" "$OUT/bf16_tiles.txt"
part fp8_default 60 python3 tests/gpu/tune_mla_decode.py --fp8 --default-splits --default-config \
  --shapes bs256 bs64 bs32 bs1
echo "fp8 default: $(grep -E '^  [0-9.]+ ' "$OUT/fp8_default.txt" | head -1)"
part check 100 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 1x1 --out /tmp/chk \
  --extra cache.dtype=fp8
grep -E "^reference|RESULT|OUTSIDE|Error" "$OUT/check.txt" | head -6
for run in fp8:1 fp8:0 auto:1; do
  kv=${run%:*} f16=${run#*:}
  LIMIT=80 decode_part "decode_${kv}_$f16" deepseek-v2-lite SPMD_MLA_FP8_F16_DOTS=$f16 -- cache.dtype=$kv
done
part check_blockfp8 120 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 1x1 \
  --out /tmp/chk_fp8w --block-fp8 --extra model.expert_dtype=model  # the dequantizing path (auto: float8 experts)
grep -E "^engine|RESULT|OUTSIDE|Error" "$OUT/check_blockfp8.txt" | head -6
rm -rf "$OUT"/*.run "$OUT"/*.json
