#!/usr/bin/env bash
# One 1-GPU device call (~6 min), session 14's MLA defaults end to end: the latent halves (bf16 tile unchanged) and
# the float8 tile (16, (32, 64), 8, 1). MLA kernel tests; DeepSeek-V2-Lite (4 layers) against transformers with
# a bf16 latent cache and with a float8 one (the reference reading float8-rounded latents); DeepSeek-V2-Lite
# decode bs256 / bs64 @1k, float8 and bf16 latent caches. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part mla_tests 120 tests/kernels/test_mla_decode.py tests/kernels/test_fp8_kv.py tests/test_mla_triton_path.py
for kv in auto fp8; do
  part "check_$kv" 120 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 1x1 --out /tmp/chk \
    --extra cache.dtype=$kv
  grep -E "^reference|RESULT|OUTSIDE|Error" "$OUT/check_$kv.txt" | head -6
done
for kv in fp8 auto; do
  decode_part "decode_$kv" deepseek-v2-lite -- cache.dtype=$kv
done
rm -rf "$OUT"/*.run "$OUT"/*.json
