#!/usr/bin/env bash
# One 1-GPU device call (~3 min): what sampling costs at a real vocabulary (session 23). Checkpoints' own defaults
# (generation_config.json) ask for top-k / top-p (Qwen3: top_k 20 top_p 0.95; Llama-3: top_p 0.9) and repetition
# penalties (Qwen2.5: 1.05), which the benchmark's greedy presets never exercise. The sampler's parts alone
# (bench_sampler.py), then Qwen3-0.6B decode at batch 256 and 64 greedy against Qwen2.5's defaults. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
part micro 200 python3 tests/gpu/bench_sampler.py
cat "$OUT/micro.txt" | grep -v Warning | head -60
decode_part greedy qwen3-0.6b
decode_part qwen25_defaults qwen3-0.6b -- sampling.temperature=0.7 sampling.top_p=0.8 sampling.top_k=20 \
  sampling.repetition_penalty=1.05
rm -rf "$OUT"/*.json "$OUT"/*.run
