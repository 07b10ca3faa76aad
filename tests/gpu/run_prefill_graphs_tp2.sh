#!/usr/bin/env bash
# One 2-GPU device call (~5 min), session 29: session 28's 2-GPU job test failed on its idle rank (run_dummy wrote the
# prefill graphs' inference-mode inputs outside inference mode; fixed, CPU-tested). That test again, now with
# DeepSeek-V2 at tp2 beside dp2 + DP attention (MoE prefill graphs at tp > 1 without DP attention had never run on a
# card), then Qwen3-MoE and DeepSeek-V2-Lite at tp2 through prefill graphs against transformers. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
test_part tests 300 tests/test_prefill_graphs.py -k two_gpu
for model in qwen3moe dsv2lite; do
  check_part 150 --model $model --layouts 1x2
  grep -E "prefill CUDA graph|replayed" "$OUT/check.txt" | head -2 | cut -c1-160
  mv "$OUT/check.txt" "$OUT/check_$model.txt"
done
rm -rf "$OUT"/*.run "$OUT"/*.json
