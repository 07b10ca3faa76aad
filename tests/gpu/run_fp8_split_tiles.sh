#!/usr/bin/env bash
# One GPU (~6 min), session 11, after run_fp8_narrow.sh: over a float8 cache the best tile depends on the split
# count. One split (nano-vllm bs256): (64, 2, 5-6) 229 us a layer against 262 for (128, 4, 3), (32, 1, 6) no faster.
# Two splits (bs64): (32, 1, 6) 80 us against 91 for (64, 2, 6) (nano-vllm), 45 against 54 (Llama-3-8B @1k). This
# sweeps one-warp tiles (shared memory bounds them to four programs an SM at six stages), then the same with twice the
# split waves (bs256 then splits in two), and times nano-vllm with per-split-count tiles (SPMD_DECODE_FP8_CONFIGS:
# the tile for one split, for two, ...) against session 10's (128, 4, 5) for both.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part tiles 150 python3 tests/gpu/tune_decode_attention.py --fp8 \
  --configs "32,1,3 32,1,4 32,1,6 32,1,8 16,1,6 64,1,4 64,2,6"
grep -v " failed:" "$OUT/tiles.txt" | tail -45
part waves16 150 env SPMD_DECODE_SPLIT_WAVES=16 python3 tests/gpu/tune_decode_attention.py --fp8 \
  --configs "32,1,4 32,1,6 64,2,6"
grep -v " failed:" "$OUT/waves16.txt" | tail -5
nano_part nano_session10 SPMD_DECODE_FP8_CONFIGS="128,4,5 128,4,5" -- cache.dtype=fp8
nano_part nano_narrow SPMD_DECODE_FP8_CONFIGS="64,2,6 64,2,6" -- cache.dtype=fp8
nano_part nano_by_splits SPMD_DECODE_FP8_CONFIGS="64,2,6 32,1,6" -- cache.dtype=fp8
nano_part nano_by_splits4 SPMD_DECODE_FP8_CONFIGS="64,2,6 32,1,4" -- cache.dtype=fp8
nano_part nano_by_splits_capped SPMD_DECODE_FP8_CONFIGS="64,2,6 32,1,6" SPMD_DECODE_FP8_MAXNREG=168 -- cache.dtype=fp8
rm -rf "$OUT"/*.run "$OUT"/*.json
