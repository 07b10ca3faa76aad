#!/usr/bin/env bash
# One 1-GPU device call (~5 min), session 15, after run_mla_session15.sh moved MLA decode's tiles (bf16
# (16, (32, 64), 4, 2), float8 (16, (32, 64), 4, 1) with fp16 dots): the MLA kernel tests at them (bf16 on the card,
# the float8 cache's fp16-dot and pinned paths); the compile-time cache offsets (ce5f456) against runtime strides
# (ab_strides.patch on a copy of kernels/) at the new bf16 tile, interleaved twice; DeepSeek-V2-Lite against
# transformers (bf16 latent cache) and decode bs256 / bs64 @1k over bf16 and float8 caches. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 150 tests/kernels/test_fp8_kv.py tests/kernels/test_mla_decode.py
ab_parts bf16 tests/gpu/ab_strides.patch 60 python3 tests/gpu/tune_mla_decode.py --default-splits --default-config \
  --shapes bs256 bs64 bs32 bs1
for run in new1 old1 new2 old2; do echo "bf16 $run: $(grep -E '^  [0-9.]+ ' "$OUT/bf16_$run.txt" | head -1)"; done
part check 100 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 1x1 --out /tmp/chk
grep -E "^reference|RESULT|OUTSIDE|Error" "$OUT/check.txt" | head -6
for kv in auto fp8; do
  LIMIT=80 decode_part "decode_$kv" deepseek-v2-lite -- cache.dtype=$kv
done
rm -rf "$OUT"/*.run "$OUT"/*.json
