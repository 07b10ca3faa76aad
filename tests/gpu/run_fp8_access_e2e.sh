#!/usr/bin/env bash
# One 1-GPU device call (~5 min), for session 39, after run_fp8_access.sh: Qwen3-0.6B nano-vllm over the float8
# cache with head-major pages (cache.layout=head) and with a sequence's KV heads side by side in decode attention's
# launch order (decode_heads_first.patch), each against the tree, interleaved (token, head, heads first, token,
# head, heads first). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
first=$(patched_kernels heads_first tests/gpu/decode_heads_first.patch)
for run in 1 2; do
  nano_part "nano_token_$run" -- cache.dtype=fp8
  nano_part "nano_head_$run" -- cache.dtype=fp8 cache.layout=head
  nano_part "nano_first_$run" PYTHONPATH="$first" -- cache.dtype=fp8
done
rm -rf "$OUT"/*.run "$OUT"/*.json
