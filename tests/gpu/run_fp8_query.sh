#!/usr/bin/env bash
# Needs f91d704 (the switch was removed after it ran). One GPU (~6 min), session 11: decode attention over a float8
# cache with q rounded to float8 too (SPMD_DECODE_FP8_QUERY=1: q k^T a float8 dot, K neither widened nor read from
# shared memory at twice its bytes). The session's profile of nano-vllm fp8 (run_nano_profile.sh, KVS=fp8): a 4.55 ms
# decode step, 3.2 ms of it in the split kernel, ~2.3 TB/s of float8 KV against 4.2 TB/s copy. This runs the float8 /
# decode kernel tests with it (bf16), the float8 tile sweep with it off and on, Qwen3 vs transformers with
# cache.dtype=fp8 off and on (top-5 rule), and nano-vllm fp8 off and on.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part kernels 150 env SPMD_DECODE_FP8_QUERY=1 python3 -m pytest -q -n 8 tests/kernels/test_fp8_kv.py \
  tests/kernels/test_decode_attention.py
tail -1 "$OUT/kernels.txt"; grep -E "^FAILED|^E " "$OUT/kernels.txt" | head -4
for q in 0 1; do
  part tiles_q$q 120 env SPMD_DECODE_FP8_QUERY=$q python3 tests/gpu/tune_decode_attention.py --fp8 \
    --configs "64,2,6 32,1,6 128,4,3"
  grep -v " failed:" "$OUT/tiles_q$q.txt" | tail -3
done
for q in 0 1; do
  part qwen3_q$q 150 env SPMD_DECODE_FP8_QUERY=$q python3 tests/gpu/check_vs_transformers.py --model qwen3 \
    --layouts 1x1 --num-prompts 8 --out /tmp/chk_q$q --extra cache.dtype=fp8
  grep -hE "RESULT|OUTSIDE|Error" "$OUT/qwen3_q$q.txt" | head -3
done
for q in 0 1 0 1; do
  nano_part nano_q$q SPMD_DECODE_FP8_QUERY=$q -- cache.dtype=fp8
done
# Measured (H200): 98 tests passed; the 4 failures were the test's own check that rounding moves the output, which
# cannot hold with the switch set for the whole process (the unrounded reference rounds too). Tiles within 1%;
# Qwen3 vs transformers 0 failed both ways; nano-vllm fp8 29.1k / 29.1k off, 29.0k / 28.3k on.
rm -rf "$OUT"/*.run "$OUT"/*.json
