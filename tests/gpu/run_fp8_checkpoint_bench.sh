#!/usr/bin/env bash
# One 1-GPU device call (~3-5 min: 31 GB written in bf16, then rewritten in float8), for session 17: the benchmark on
# random weights written as a block-float8 checkpoint (bench.checkpoint_format=fp8, DeepSeek-V3's release format,
# new in session 16) and read back by the real loader, with model.expert_dtype=auto (new in session 16: a float8
# checkpoint's experts stay float8 on a GPU that runs float8): startup (load_s: the float8 bytes kept as stored, the
# rest dequantized as read) and decode bs256 / bs64 @1k for DeepSeek-V2-Lite; the JSON's model.fp8_experts must be
# true. (Session 16, random weights quantized at build: 11.5 / 8.5 ms a step.) Not Qwen3-30B-A3B: written in bf16
# first (61 GB), it would not fit the host's disk beside its rewrite. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
for preset in deepseek-v2-lite; do
  LIMIT=300 decode_part "$preset" "$preset" -- bench.load=true bench.checkpoint_format=fp8 \
    bench.checkpoint_dir=/tmp/ckpt_$preset
  grep -E "^startup" "$OUT/$preset.txt" | cut -c1-120
  python3 -c "import json; r = json.load(open('$OUT/$preset.json')); print('fp8_experts', r['model']['fp8_experts'], \
'load_s', round(r['startup']['load_s'], 1), 'write_s', round(r['startup']['checkpoint_write_s'], 1))"
  rm -rf /tmp/ckpt_$preset
done
rm -rf "$OUT"/*.run
