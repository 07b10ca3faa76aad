#!/usr/bin/env bash
# One 1-GPU device call (~4 min), session 18: SPMD_FP8_FUSED_NORM (built in session 18, off): the RMSNorms before a
# float8 qkv / gate_up projection round their output to float8 in the same launch (rmsnorm.rms_norm_quantized;
# the same values bit for bit, one launch a projection fewer at decode). The kernel tests on sm_90 (its tl.reshape
# into 128-wide groups of a 4096-wide row), then Llama-3-8B decode bs64 / bs1 @1k with float8 linear layers on / off
# (session 18, off: 6.7 / 3.2 ms a step), then the Qwen3 check from its float8 copy with it on (off: 0 exact + 15
# within top-5 + 1 outside; on must give the same tokens). Turn it on if decode is no slower. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 90 tests/kernels/test_rmsnorm.py tests/kernels/test_fp8_linear.py
for fused in 1 0 1 0; do
  part "decode_$fused" 80 env SPMD_FP8_FUSED_NORM=$fused python3 -m spmd_infer.bench bench.preset=llama-3-8b \
    bench.workload=decode 'bench.batch_sizes=[64,1]' bench.context=1024 model.linear_dtype=fp8 \
    bench.output=$OUT/decode_$fused.json
  echo "--- fused RMSNorm rounding: $fused"; grep -E "^decode bs|Error" "$OUT/decode_$fused.txt" | cut -c1-110
done
part check 100 env SPMD_FP8_FUSED_NORM=1 python3 tests/gpu/check_vs_transformers.py --model qwen3 --layouts 1x1 \
  --out /tmp/chk_norm --block-fp8
grep -E "RESULT|OUTSIDE|Error" "$OUT/check.txt" | head -4
rm -rf "$OUT"/*.run "$OUT"/*.json
