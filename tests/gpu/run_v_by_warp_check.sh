#!/usr/bin/env bash
# One 1-GPU device call (~7 min), session 38: the float8 decode defaults with V dealt by warp (FP8_V_BY_WARP, tiles
# 128,4,3 / 32,1,6 / 64,4,3 by split count, every tile widening in assembly) checked and timed: the decode kernels'
# tests in bf16, the Qwen3 check over the float8 cache against transformers on float8-rounded keys and values, the
# kernel alone on the engine's tiles (tune_decode_attention.py --fp8), Qwen3-0.6B nano-vllm over the float8 cache
# twice, Llama-3-8B decode @1k bs1 / bs64 over the float8 cache against session 37's float8 settings
# (SPMD_DECODE_FP8_V_BY_WARP=0, 64,2,6 / 32,1,6 / 128,4,3, ASM_WIDEN 2). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 150 tests/kernels/test_fp8_kv.py tests/kernels/test_decode_attention.py
check_part 150 --model qwen3 --layouts 1x1 --out /tmp/chk_fp8 --extra cache.dtype=fp8
part tiles 100 python3 tests/gpu/tune_decode_attention.py --fp8 --configs "64,2,6"
grep -vE "^\s*$|warn" "$OUT/tiles.txt" | tail -24 | cut -c1-110
for run in 1 2; do
  nano_part "nano_fp8_$run" -- cache.dtype=fp8
  nano_summary "nano_fp8_$run"
done
OLD=(SPMD_DECODE_FP8_V_BY_WARP=0 "SPMD_DECODE_FP8_CONFIGS=64,2,6 32,1,6 128,4,3" SPMD_DECODE_FP8_ASM_WIDEN=2)
BATCHES=1,64 LIMIT=90 decode_part llama_fp8_new llama-3-8b -- cache.dtype=fp8 bench.repeats=2
BATCHES=1,64 LIMIT=90 decode_part llama_fp8_old llama-3-8b "${OLD[@]}" -- cache.dtype=fp8 bench.repeats=2
rm -rf "$OUT"/*.run "$OUT"/*.json
