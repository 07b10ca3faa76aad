#!/usr/bin/env bash
# One 1-GPU device call (~6 min), session 15, after run_fp8_experts.sh: float8 experts now take float8 activations
# too (x and h a scale per token per 128 features, float8 tensor-core dots) where an expert gets more than 32 rows
# (prefill-sized batches), since widening float8 weights to bf16 made a 4 x 2048 prefill's MoE 852 us against
# bf16's 506 (DeepSeek-V2-Lite TTFT 1773 -> 2505 ms at bs256 @1k). The fused-MoE tests on the card (the float8
# rounding test against torch's cast), tune_fused_moe.py --fp8, DeepSeek-V2-Lite from its block-float8 copy
# against transformers on the dequantized values, decode bs256 / bs64 @1k (TTFT: the prefill) with float8 experts
# for DeepSeek-V2-Lite and Qwen3-30B-A3B (bf16 experts, the same call of run_fp8_experts.sh: 1773 / 2149 ms TTFT,
# 14.0 / 26.0 ms a step at bs256). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 90 tests/kernels/test_fused_moe.py tests/test_fp8_experts.py
part tune 120 python3 tests/gpu/tune_fused_moe.py --fp8
grep -E -A1 "local \(" "$OUT/tune.txt" | cut -c1-150; grep "(default)" "$OUT/tune.txt" | uniq | cut -c1-100
part check 100 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 1x1 --out /tmp/chk_w8a8 \
  --block-fp8 --extra model.expert_dtype=fp8
grep -E "^engine|RESULT|OUTSIDE|Error" "$OUT/check.txt" | head -6
for preset in deepseek-v2-lite qwen3-30b-a3b; do
  part "decode_$preset" 90 python3 -m spmd_infer.bench bench.preset=$preset bench.workload=decode \
    'bench.batch_sizes=[256,64]' bench.context=1024 model.expert_dtype=fp8 bench.output=$OUT/d_$preset.json
  echo "--- $preset experts fp8"; grep -E "^case|^decode bs|Error" "$OUT/decode_$preset.txt" | cut -c1-110
done
rm -rf "$OUT"/*.run "$OUT"/*.json
