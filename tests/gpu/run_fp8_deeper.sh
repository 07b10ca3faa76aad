#!/usr/bin/env bash
# One 1-GPU device call (~5 min), session 38: deeper float8 pipelines with V dealt by warp. At 3 or 4 stages
# Triton gives the (128, 4, 3) tile one K and one V buffer (a tile in flight a program while it computes, 32 KB
# over a float8 cache against 64 over bf16); at 5-6 stages two (ptx_census.py: 75 KB of shared memory, 148 registers,
# still three programs an SM). The float8 tiles alone, then Qwen3-0.6B nano-vllm over the float8 cache with
# (128, 4, 5) for one split against the defaults, interleaved. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
part tiles 120 python3 tests/gpu/tune_decode_attention.py --fp8 \
  --configs "${TILES:-128,4,3 128,4,5 128,4,7 64,4,5 32,1,8 64,2,8}"
grep -vE "^\s*$|warn|\(default\)$" "$OUT/tiles.txt" | tail -60 | cut -c1-110
ONE=${ONE:-128,4,5}
nano_part nano_deep_1 "SPMD_DECODE_FP8_CONFIGS=$ONE 32,1,6 64,4,3" -- cache.dtype=fp8
nano_part nano_default -- cache.dtype=fp8
nano_part nano_deep_2 "SPMD_DECODE_FP8_CONFIGS=$ONE 32,1,6 64,4,3" -- cache.dtype=fp8
rm -rf "$OUT"/*.run "$OUT"/*.json
