#!/usr/bin/env bash
# One 2-GPU device call (~4 min): SPMD_SKINNY_SPLIT (on by default since session 21, timed on one GPU with
# Qwen3-0.6B) under tensor parallelism, where bigger models' shards fall below 16 MB: Llama-3-8B at tp2 holds qkv
# 24 MB and o 16 MB a rank (mid-sized: unsplit skinny_gemm), Qwen3-8B at tp2 the same, DeepSeek-V2-Lite at tp2 its
# q / kv_a / o projections at 1-6 MB (split). The Qwen3 check against transformers at tp2 (split products and an
# all-reduce after them); Llama-3-8B and DeepSeek-V2-Lite decode @1k bs1 / bs16 at tp2 on / off. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
check_part 150 --model qwen3 --layouts 1x2 --num-prompts 8 \
  --out /tmp/chk_tp2
for preset in llama-3-8b deepseek-v2-lite; do
  switch_parts "${preset}_tp2" SPMD_SKINNY_SPLIT 150 torchrun --nproc-per-node 2 -m spmd_infer.bench \
    bench.preset="$preset" bench.workload=decode 'bench.batch_sizes=[16,1]' bench.context=1024 parallel.tp=2 \
    bench.repeats=2 bench.output="$OUT/$preset.json"
done
rm -rf "$OUT"/*.json "$OUT"/*.run
