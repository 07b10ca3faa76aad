#!/usr/bin/env bash
# One GPU (~5 min): larger decode tiles over a float8 cache. Session 10 found float8 decode at ~46% of the copy rate
# in float8 bytes, about a bf16 cache's elements a second, whether V was laid out by token or by head dimension and
# whether it was widened by cvt or by moving bits: neither transposes nor conversions bind it. The hypothesis
# left: a float8 tile is half the bytes, so the same tiles in flight keep half the bytes in flight. The float8
# tile sweep with larger tiles and deeper pipelines, then Qwen3-0.6B nano-vllm with the fp8 cache on two of them.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part tiles 240 python3 tests/gpu/tune_decode_attention.py --fp8 \
  --configs "256,4,2 256,4,3 256,8,2 256,8,3 128,4,4 128,4,5 128,8,3 512,8,2"
grep -v " failed:" "$OUT/tiles.txt" | tail -45
for cfg in 128,4,3 256,4,3 256,8,3; do
  nano_part nano_${cfg//,/_} SPMD_DECODE_CONFIG=$cfg -- cache.dtype=fp8
done
rm -rf "$OUT"/*.run "$OUT"/*.json
