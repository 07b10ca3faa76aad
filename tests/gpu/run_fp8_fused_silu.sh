#!/usr/bin/env bash
# One 1-GPU device call (~5 min), for session 18: SPMD_FP8_FUSED_SILU (built in session 17 after its device time,
# off): a float8 down projection's input rounded to float8 by the SiLU kernel as it writes it (silu_and_mul_quantized)
# instead of by quantize_activations' own launch; the same values bit for bit, one launch and one bf16 round trip of
# h fewer a layer. The kernel tests on sm_90 (the fused kernel's tl.reshape into 128-wide groups has only run in the
# interpreter), then Llama-3-8B decode bs64 / bs1 @1k with float8 linear layers on / off (session 17, off: 6.5 /
# 3.2 ms a step), then the Qwen3 check from its float8 copy with it on (session 17, off: 0 exact + 15 within top-5 +
# 1 outside; on must give the same tokens). Session 18 ran it first (281 passed; 6.7 / 3.2 ms on against 6.6 / 3.3
# off; the same check result): on by default since. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 90 tests/kernels/test_activation.py tests/kernels/test_fp8_linear.py
switch_parts decode SPMD_FP8_FUSED_SILU 80 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
  'bench.batch_sizes=[64,1]' bench.context=1024 model.linear_dtype=fp8 bench.output=$OUT/decode.json
check_part 100 SPMD_FP8_FUSED_SILU=1 --model qwen3 --layouts 1x1 \
  --out /tmp/chk_fused --block-fp8
rm -rf "$OUT"/*.run "$OUT"/*.json
