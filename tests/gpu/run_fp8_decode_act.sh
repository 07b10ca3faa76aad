#!/usr/bin/env bash
# One 1-GPU device call (~8 min), session 16: float8 experts' activations at decode-sized batches
# (SPMD_MOE_FP8_DECODE_ACT: the model's dtype, the default, against fp16 or float8 scaled per token per 128 features;
# offline, ptx_census.py moe --weights fp8 --tile small --act model / fp16 / fp8 gives the gate / up loop 302 / 341 /
# 393 instructions a trip over 1x / 2x / 4x the work), and at prefill-sized ones the model's dtype against float8
# (the default there), where session 15's kernel timing (860-969 against 852 us, ep4 4 x 2048) and engine TTFT
# (2.21 against 2.47-2.52 s) disagreed: the sweep now includes one GPU's 8192-token chunk over all 64 experts, as
# the engine runs it. The fused-MoE and float8-expert tests with float8 decode activations first. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 150 SPMD_MOE_FP8_DECODE_ACT=fp8 tests/kernels/test_fused_moe.py tests/test_fp8_experts.py
# (fp16 activations were removed after this call: the sweep now takes model,fp8.)
part tune_decode 270 python3 tests/gpu/tune_fused_moe.py --fp8 --activations model,fp8 --shapes decode
grep -E -A1 "local \(" "$OUT/tune_decode.txt" | cut -c1-130; grep "(default)" "$OUT/tune_decode.txt" | cut -c1-100
part tune_prefill 120 python3 tests/gpu/tune_fused_moe.py --fp8 --activations model,fp8 --shapes prefill
grep -E -A1 "local \(" "$OUT/tune_prefill.txt" | cut -c1-130; grep "(default)" "$OUT/tune_prefill.txt" | cut -c1-100
