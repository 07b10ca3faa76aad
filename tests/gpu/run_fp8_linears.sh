#!/usr/bin/env bash
# One 1-GPU device call (~5 min): dense linear layers in float8 (model.linear_dtype, session 17; kernels/fp8_linear.py,
# W8A8 with x rounded to float8 a token's 128 features at a time). fp8_linear's tests in bf16; Llama-3-8B decode
# bs64 / bs1 @1k with its linear layers in float8 (random weights quantized at build; session 17: 6.5 / 3.2 ms a
# step, bf16 7.4 / 4.6); a Qwen3-0.6B-wide model from its block-float8 copy against transformers on the dequantized
# values, with float8 activations and with the weights widened (session 17: 1 / 0 of 16 outside the top-5 rule);
# the kernel alone against cuBLAS bf16 over a few tiles at Llama-3-8B's shapes. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
# Kernel tests and top-level tests as separate parts: one pytest over both, kernels / top / kernels in that order,
# lost tests/kernels' conftest fixtures on one xdist worker (call 3).
test_part tests 80 tests/kernels/test_fp8_linear.py
part decode_fp8 80 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
  'bench.batch_sizes=[64,1]' bench.context=1024 model.linear_dtype=fp8 bench.output=$OUT/decode_fp8.json
grep -E "^model|^decode bs|Error" "$OUT/decode_fp8.txt" | cut -c1-140
# The same float8 copy with float8 activations (the default) and with the weights widened (the dequantized model
# exactly: the loading and the layers, without float8's rounding of x).
for act in fp8 model; do
  part "check_$act" 90 env SPMD_FP8_ACT=$act python3 tests/gpu/check_vs_transformers.py --model qwen3 --layouts 1x1 \
    --out /tmp/chk_lin --block-fp8
  echo "--- activations $act"; grep -E "RESULT|OUTSIDE|Error" "$OUT/check_$act.txt" | head -4
done
part tune 110 python3 tests/gpu/tune_fp8_linear.py --shapes llama3 --rows 1,16,64,256,8192 \
  --tiles '16,128,4,4;16,128,4,6;16,64,4,6;16,128,4,4,1;16,128,4,4,2;64,64,4,4;64,128,4,4;128,128,8,3'
grep -E "summary|  fp8 rows|WRONG|failed" "$OUT/tune.txt" | cut -c1-220
grep -E "rows=(1|16) .*activations|\(default\)" "$OUT/tune.txt" | cut -c1-150 | head -24
rm -rf "$OUT"/*.run "$OUT"/*.json
