#!/usr/bin/env bash
# One GPU (~5 min): decode attention's tile at large batches, where nano-vllm spends 75% of its step (session 9,
# run_nano_profile.sh: 4.08 ms a step, ~85% of the copy rate). At 256 sequences x 8 KV heads every (sequence, KV
# head) is one program (no split), whose length follows its sequence's context (100..2048 tokens), so programs are
# uneven and each pays its own pipeline fill. The default tile (BLOCK_N 128, 4 warps, 3 stages) takes ~74 KB of
# shared memory in the sm_90 compile (tests/gpu/ptx_census.py decode --cache bf16): three programs an SM; 64- and
# 32-token tiles take ~39 and ~22 KB. The tuner chose 128 over six uniform-length shapes, none mixed like
# nano-vllm's. Qwen3-0.6B nano-vllm and Llama-3-8B bs64 @1k with the default and three smaller tiles
# (SPMD_DECODE_CONFIG=BLOCK_N,warps,stages); a winner at large batches only would become a batch-dependent rule in
# decode_attention._launch_config. Session 10 (H200): nano-vllm 24.4k (128,4,3), 24.1k (64,4,3), 24.5k (64,4,4),
# 22.7k (32,4,4) tok/s; Llama-3-8B bs64 7.4 / 7.2 / 7.2 / 7.4 ms: within noise, the default stays. (Run at commit
# a9df00c it also timed longest-first decode batches, since removed: see engine/scheduler.py.)
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
for cfg in 128,4,3 64,4,3 64,4,4 32,4,4; do
  nano_part nano_${cfg//,/_} SPMD_DECODE_CONFIG=$cfg
  part bs64_${cfg//,/_} 60 env SPMD_DECODE_CONFIG=$cfg python3 -m spmd_infer.bench bench.preset=llama-3-8b \
    bench.workload=decode 'bench.batch_sizes=[64]' bench.context=1024 bench.output=$OUT/bs64.json
  grep -E "^decode bs|Error" "$OUT/bs64_${cfg//,/_}.txt" | cut -c1-150
done
rm -rf "$OUT"/*.run "$OUT"/*.json
