#!/usr/bin/env bash
# One 1-GPU device call (~8 min), for session 16: float8 experts at decode-sized batches with fp16 activations
# scaled per token per 128 features (SPMD_MOE_FP8_F16_ACT=1, built in session 15 without device time: off). Offline
# (ptx_census.py moe --weights fp8 --f16-dots 1) the gate / up loop issues ~0.56x the instructions for its work
# (the weights widen by one cvt a pair; to bf16 they took three instructions a pair more) but holds 136 registers
# at the small tile (72 before), and the down loop 0.8-0.86x. The tests with it on, the kernel alone on / off
# (tune_fused_moe.py --fp8, interleaved), then DeepSeek-V2-Lite against transformers from its block-float8 copy and
# decode bs256 / bs64 @1k for DeepSeek-V2-Lite and Qwen3-30B-A3B, on / off. Turn it on if decode is faster.
# Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 120 SPMD_MOE_FP8_F16_ACT=1 tests/kernels/test_fused_moe.py tests/test_fp8_experts.py
for run in 1a 0a; do
  part "tune_$run" 150 env SPMD_MOE_FP8_F16_ACT=${run:0:1} python3 tests/gpu/tune_fused_moe.py --fp8
  echo "--- fp16 activations ${run:0:1}"; grep "(default)" "$OUT/tune_$run.txt" | uniq | cut -c1-100
done
part check 100 env SPMD_MOE_FP8_F16_ACT=1 python3 tests/gpu/check_vs_transformers.py --model dsv2lite \
  --layouts 1x1 --out /tmp/chk_f16 --block-fp8 --extra model.expert_dtype=fp8
grep -E "^engine|RESULT|OUTSIDE|Error" "$OUT/check.txt" | head -6
for preset in deepseek-v2-lite qwen3-30b-a3b; do
  for f16 in 1 0; do
    part "decode_${preset}_$f16" 90 env SPMD_MOE_FP8_F16_ACT=$f16 python3 -m spmd_infer.bench bench.preset=$preset \
      bench.workload=decode 'bench.batch_sizes=[256,64]' bench.context=1024 model.expert_dtype=fp8 \
      bench.output=$OUT/d_${preset}_$f16.json
    echo "--- $preset fp16 activations $f16"; grep -E "^decode bs|Error" "$OUT/decode_${preset}_$f16.txt" | cut -c1-100
  done
done
rm -rf "$OUT"/*.run "$OUT"/*.json
