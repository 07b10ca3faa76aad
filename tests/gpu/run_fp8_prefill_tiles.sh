#!/usr/bin/env bash
# One 1-GPU device call (~5 min), session 16: the float8 experts' tests on the card after the bf16 tolerance and
# reference-division fixes, then a wider tile sweep for float8 activations at prefill-sized batches, where the MoE
# is ~90% of DeepSeek-V2-Lite's TTFT and one GPU's 8192-token chunk runs at 30% of float8's dense peak (1783 us at
# (64, 128, 64, 4, 4); BLOCK_K is a whole 128-feature scale group whatever the tile says). Ran in session 16 (H200):
# 174 passed; the default first or within 1% of the best on every shape (8192-token chunk 1764 us, 4 x 2048 at ep4
# 485 against 484, ep4 bs1024x4 268, Qwen3-30B-A3B ep4 bs256x4 106). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 100 tests/kernels/test_fused_moe.py tests/test_fp8_experts.py
TILES="64,128,64,4,4;64,128,64,4,3;64,128,64,4,5;64,128,64,8,4;128,128,64,8,3;128,128,64,8,4;128,64,64,4,4"
TILES="$TILES;128,64,64,8,4;64,64,64,4,4;64,256,64,8,3;128,256,64,8,3;256,128,64,8,3"
part tune 240 python3 tests/gpu/tune_fused_moe.py --fp8 --activations fp8 --shapes prefill --tiles "$TILES"
grep -E -A6 "local \(" "$OUT/tune.txt" | cut -c1-120
part tune_large 150 python3 tests/gpu/tune_fused_moe.py --fp8 --activations fp8 --shapes "x4" --tiles "$TILES"
grep -E -A6 "local \(" "$OUT/tune_large.txt" | cut -c1-120
