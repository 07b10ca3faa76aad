#!/usr/bin/env bash
# One GPU (~5 min): decode attention over a float8 cache with fp16 dots (FP8_DOTS_IN_F16) -- the bf16 kernel tests
# of the fp8 cache, the fp8 tile sweep (fp16 vs bf16 dots, bf16 cache beside them), Qwen3 vs transformers with
# cache.dtype=fp8 (top-5 rule) and Qwen3-0.6B nano-vllm with the fp8 and the bf16 cache.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
rows() { grep -A3 "^case " "$OUT/$1.txt" | grep -v "^results"; grep -h "Error" "$OUT/$1.txt" | tail -2; }
part kernels 120 python3 -m pytest -q tests/kernels/test_fp8_kv.py tests/kernels/test_decode_attention.py
tail -1 "$OUT/kernels.txt"; grep -hE "^FAILED" "$OUT/kernels.txt" | head
part tune_fp8 200 python3 tests/gpu/tune_decode_attention.py --fp8
grep -v "^  .* failed:" "$OUT/tune_fp8.txt" | tail -42
part qwen3_fp8 120 python3 tests/gpu/check_vs_transformers.py --model qwen3 --layouts 1x1 --num-prompts 8 \
  --out /tmp/chk4 --extra cache.dtype=fp8
grep -hE "RESULT|OUTSIDE|Error" "$OUT/qwen3_fp8.txt" | head -3
for kv in fp8 auto; do
  part nano_$kv 90 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=nano_vllm cache.dtype=$kv \
    bench.output=$OUT/nano_$kv.json
  rows nano_$kv
done
rm -rf "$OUT"/*.run  # run dirs: too many files for the device tool to bring back
