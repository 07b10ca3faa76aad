#!/usr/bin/env bash
# One 1-GPU device call (~3 min), session 31: MoE decode at batch 1 runs far from its bytes (Qwen1.5-MoE-A2.7B 3.5 ms
# a step, MBU 35%; DeepSeek-V2-Lite ~3.9 ms): its kernels one at a time (SPMD_PDL=0), their count and heaviest, for
# Qwen1.5-MoE (a gated shared expert), DeepSeek-V2-Lite (two shared experts) and Qwen3-30B-A3B (none). PDL=1 keeps
# programmatic dependent launch on (and with it skinny_gemm on qkv / o: the engine's real kernels, but each one's
# time then includes its wait on the one before); PRESETS picks the models. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
for preset in ${PRESETS:-qwen1.5-moe-a2.7b deepseek-v2-lite qwen3-30b-a3b}; do
  part "$preset" 120 env SPMD_PDL=${PDL:-0} python3 -m spmd_infer.bench bench.preset=$preset bench.workload=decode \
    'bench.batch_sizes=[1]' bench.context=1024 bench.profile=true bench.profile_top=40 bench.output="$OUT/$preset.json"
  grep -E "^decode bs" "$OUT/$preset.txt" | cut -c1-110
  grep -A44 "^profile of" "$OUT/$preset.txt" | cut -c1-150
done
rm -rf "$OUT"/*.run
