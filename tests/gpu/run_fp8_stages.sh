#!/usr/bin/env bash
# One GPU (~4 min): decode attention over a float8 cache with the deeper pipeline for launches of at most two splits
# (decode_attention.FP8_DEEP_STAGES, 5 by default; run_fp8_tiles.sh chose it): the float8 kernel tests in bf16,
# five to eight stages in the float8 tile sweep, and Qwen3-0.6B nano-vllm with the fp8 cache at 3 and 5 stages.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part kernels 90 python3 -m pytest -q -n 8 tests/kernels/test_fp8_kv.py tests/kernels/test_decode_attention.py
tail -1 "$OUT/kernels.txt"; grep -E "^FAILED|^E " "$OUT/kernels.txt" | head -4
part stages 150 python3 tests/gpu/tune_decode_attention.py --fp8 --configs "128,4,5 128,4,6 128,4,7 128,4,8"
grep -v " failed:" "$OUT/stages.txt" | tail -8
for stages in 5 3; do
  nano_part nano_fp8_$stages SPMD_DECODE_FP8_STAGES=$stages -- cache.dtype=fp8
done
rm -rf "$OUT"/*.run "$OUT"/*.json "$OUT"/kernels.txt
