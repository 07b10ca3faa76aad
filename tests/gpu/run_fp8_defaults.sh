#!/usr/bin/env bash
# One GPU (~5 min), session 11: the per-split-count float8 tiles as defaults (decode_attention.FP8_FEW_SPLIT_CONFIGS
# "64,2,6 32,1,6"): the float8 and decode kernel tests in bf16, a last sweep around the one-warp tile (programs an SM
# by tests/gpu/ptx_census.py: (32, 1, 6) ten, (32, 1, 7) seven, (16, 1, 12) nine, (64, 2, 7) four), nano-vllm fp8
# twice with the defaults and once with session 10's (128, 4, 5), and nano-vllm bf16 (unchanged path) once.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part kernels 150 python3 -m pytest -q -n 8 tests/kernels/test_fp8_kv.py tests/kernels/test_decode_attention.py
tail -1 "$OUT/kernels.txt"; grep -E "^FAILED|^E " "$OUT/kernels.txt" | head -4
part tiles 150 python3 tests/gpu/tune_decode_attention.py --fp8 \
  --configs "32,1,5 32,1,6 32,1,7 16,1,8 16,1,12 64,2,6 64,2,7"
grep -v " failed:" "$OUT/tiles.txt" | tail -45
nano_part nano_default1 -- cache.dtype=fp8
nano_part nano_session10 SPMD_DECODE_FP8_CONFIGS="128,4,5 128,4,5" -- cache.dtype=fp8
nano_part nano_default2 -- cache.dtype=fp8
nano_part nano_bf16
rm -rf "$OUT"/*.run "$OUT"/*.json
