#!/usr/bin/env bash
# One 1-GPU device call (~9 min), for session 17: float8 experts' products computed transposed, weights x rows, at
# decode-sized tiles (SPMD_MOE_FP8_SWAP=1, built in session 16 after its device time: off). Offline (ptx_census.py
# moe --weights fp8 --swap 1) the 16- and 32-row tiles then run float8 wgmma (QGMMA 64x16x32) from shared memory
# instead of Triton's mma with both operands widened to fp16 in registers: instructions a trip, gate / up small
# 393 -> 236, medium 546 -> 288; down small 162 -> 125, medium 245 -> 160 (shared memory up: small gate / up 68 ->
# 102 KB, 3 -> 2 programs an SM). The fused-MoE tests with it on, the decode-sized shapes on / off over a few tiles
# (tune_fused_moe.py; session 16 without it: DeepSeek-V2-Lite bs64 174 us, bs256 209, ep4 bs64x4 78), DeepSeek-V2-
# Lite against transformers from its block-float8 copy with it on, then decode bs256 / bs64 @1k for DeepSeek-V2-Lite
# and Qwen3-30B-A3B on / off (session 16: 11.5 / 8.5 and 20.7 / 14.1 ms a step). Turn it on if decode is faster.
# Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 100 SPMD_MOE_FP8_SWAP=1 tests/kernels/test_fused_moe.py tests/test_fp8_experts.py
TILES="16,64,64,4,3;16,64,64,4,2;16,128,64,4,3;32,64,64,4,3;32,64,64,4,2"
for swap in 1 0; do
  part "tune_$swap" 120 env SPMD_MOE_FP8_SWAP=$swap python3 tests/gpu/tune_fused_moe.py --fp8 --shapes decode \
    --tiles "$TILES"
  echo "--- products transposed: $swap"; grep -E -A2 "local \(" "$OUT/tune_$swap.txt" | cut -c1-110
done
decode() {  # decode PRESET SWAP
  LIMIT=80 decode_part "decode_$1_$2" "$1" SPMD_MOE_FP8_SWAP=$2 -- model.expert_dtype=fp8
}
decode deepseek-v2-lite 1; decode deepseek-v2-lite 0
part check 110 env SPMD_MOE_FP8_SWAP=1 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 1x1 \
  --out /tmp/chk_swap --block-fp8
grep -E "^engine|RESULT|OUTSIDE|Error" "$OUT/check.txt" | head -6
decode qwen3-30b-a3b 1; decode qwen3-30b-a3b 0  # last: if the call runs out, what came before is kept
rm -rf "$OUT"/*.run "$OUT"/*.json
