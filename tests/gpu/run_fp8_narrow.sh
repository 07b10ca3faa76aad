#!/usr/bin/env bash
# One GPU (~6 min), session 11: run_fp8_occupancy.sh found narrow float8 tiles faster where the context is split at
# most twice: (64, 2, 6) 229 us a layer at nano-vllm bs256 against 243 for the (128, 4, 5) default, Llama-3-8B bs64
# @1k 54 against 65 us; capping registers at 168 took (128, 4, 3) 263 -> 232 us but not (128, 4, 5), and nano-vllm
# fp8 only 27.4k -> 27.7k tok/s. This sweeps around (64, 2, 6) (stages, 32-token tiles, one warp), the same with the
# cap, narrow tiles over a bf16 cache too, then nano-vllm with each candidate for both split counts, and the float8
# kernel tests in bf16 under the narrow tile. The register cap (SPMD_DECODE_FP8_MAXNREG) is gone since: its parts now
# time the uncapped tiles.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part tiles 200 python3 tests/gpu/tune_decode_attention.py --fp8 \
  --configs "64,2,4 64,2,5 64,2,6 64,2,8 32,2,6 32,2,8 32,1,6 64,1,6 128,2,4"
grep -v " failed:" "$OUT/tiles.txt" | tail -12
part capped 120 env SPMD_DECODE_FP8_MAXNREG=168 python3 tests/gpu/tune_decode_attention.py --fp8 \
  --configs "64,2,6 64,2,8 32,2,8"
grep -v " failed:" "$OUT/capped.txt" | tail -5
part bf16 150 python3 tests/gpu/tune_decode_attention.py --configs "64,2,3 64,2,4 64,2,6 128,4,4 32,2,6"
grep -v " failed:" "$OUT/bf16.txt" | tail -40
part tests 150 env SPMD_DECODE_FP8_CONFIGS="64,2,6 64,2,6" python3 -m pytest -q -n 8 tests/kernels/test_fp8_kv.py \
  tests/kernels/test_decode_attention.py
tail -1 "$OUT/tests.txt"; grep -E "^FAILED|^E " "$OUT/tests.txt" | head -4
for cfg in 128,4,5 64,2,6 64,2,8; do
  nano_part "nano_${cfg//,/_}" SPMD_DECODE_FP8_CONFIGS="$cfg $cfg" -- cache.dtype=fp8
done
nano_part nano_capped SPMD_DECODE_FP8_CONFIGS="64,2,6 64,2,6" SPMD_DECODE_FP8_MAXNREG=168 -- cache.dtype=fp8
nano_part nano_bf16 
nano_part nano_bf16_64_2_4 SPMD_DECODE_CONFIG=64,2,4
rm -rf "$OUT"/*.run "$OUT"/*.json
