#!/usr/bin/env bash
# 1-GPU device calls (session 15): routed experts kept in float8 with a scale per 128 x 128 block
# (model.expert_dtype=fp8, CPU-tested). PARTS=kernels (~5 min): the fused-MoE tests in bf16 on the card with the
# float8 ones, then tune_fused_moe.py's tile sweep with float8 experts and without (the same shapes, bound at a byte
# a weight). PARTS=engine (~5 min): DeepSeek-V2-Lite (4 layers) loaded from a block-float8 copy with its experts
# kept in float8 against transformers on the dequantized values, then decode bs256 / bs64 @1k with experts in bf16
# and float8: DeepSeek-V2-Lite and Qwen3-30B-A3B. Carry [".whl"].
set -uo pipefail
want() { [[ ${PARTS:-all} == all || " $PARTS " == *" $1 "* ]]; }
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
if want kernels; then
test_part tests 150 tests/kernels/test_fused_moe.py tests/test_fp8_experts.py tests/test_fp8_checkpoint.py
for kind in fp8 bf16; do
  part "tune_$kind" 170 python3 tests/gpu/tune_fused_moe.py $([[ $kind == fp8 ]] && echo --fp8)
  echo "--- experts $kind"; grep -E "^[a-z0-9].*: [0-9]+ local|\(default\)|^ +[0-9.]+ us" "$OUT/tune_$kind.txt" \
    | grep -B0 -A2 "local" | cut -c1-150 | head -40
done
fi
if want engine; then
part check 150 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 1x1 --out /tmp/chk_fp8e \
  --block-fp8 --extra model.expert_dtype=fp8
grep -E "^engine|RESULT|OUTSIDE|Error" "$OUT/check.txt" | head -6
for preset in deepseek-v2-lite qwen3-30b-a3b; do
  for dt in auto fp8; do
    decode_part "decode_${preset}_$dt" "$preset" -- model.expert_dtype=$dt
  done
done
fi
rm -rf "$OUT"/*.run "$OUT"/*.json
