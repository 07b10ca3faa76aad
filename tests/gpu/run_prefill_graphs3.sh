#!/usr/bin/env bash
# One 1-GPU device call (~4 min), session 27, after prefill graphs learned to fall back: their tests on the card (a
# capture failing inside a graph leaves the job prefilling eagerly), then Qwen3-0.6B's nano-vllm protocol over the
# float8 KV cache (the store inside the pieces writes float8) with prefill graphs on and off. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
part tests 200 python3 -m pytest -q -n 6 --tb=line tests/test_prefill_graphs.py
tail -1 "$OUT/tests.txt"; grep -E "^E |Error|assert" "$OUT/tests.txt" | head -20 | cut -c1-300
for on in true false; do
  nano_part "nano_fp8_$on" -- cache.dtype=fp8 runtime.prefill_graphs=$on
  grep -E "prefill CUDA|eagerly" "$OUT/nano_fp8_$on.txt" | cut -c1-160
done
rm -rf "$OUT"/*.run "$OUT"/*.json
