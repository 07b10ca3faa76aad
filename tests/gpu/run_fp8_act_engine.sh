#!/usr/bin/env bash
# One 1-GPU device call (~9 min), session 16, after run_fp8_decode_act.sh: float8 experts now take float8
# activations at every batch size by default (SPMD_FP8_ACT=fp8; the kernel alone 0.58-0.70x the time of
# widening the weights to bf16 at every shape). The fused-MoE and float8-expert tests on the card under the new
# defaults (and the reference's IEEE scale division), DeepSeek-V2-Lite from its block-float8 copy against
# transformers on the dequantized values, then decode bs256 / bs64 @1k (TTFT: the prefill) for DeepSeek-V2-Lite and
# Qwen3-30B-A3B with float8 experts, float8 activations against the model's dtype (session 15: 13.8-14.0 / 10.5-10.8
# and 24.7-25.2 / 17.6-18.6 ms a step with float8 activations at prefill only). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 100 tests/kernels/test_fused_moe.py tests/test_fp8_experts.py
part check 110 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 1x1 --out /tmp/chk_act \
  --block-fp8 --extra model.expert_dtype=fp8
grep -E "^engine|RESULT|OUTSIDE|Error" "$OUT/check.txt" | head -6
for preset in deepseek-v2-lite qwen3-30b-a3b; do
  for act in fp8 model; do
    LIMIT=85 decode_part "decode_${preset}_$act" "$preset" SPMD_FP8_ACT=$act -- model.expert_dtype=fp8
  done
done
rm -rf "$OUT"/*.run "$OUT"/*.json
