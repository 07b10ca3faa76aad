#!/usr/bin/env bash
# One 1-GPU device call (~2 min): where the nano-vllm protocol's prefill goes (Qwen3-0.6B: 18 steps of 8192 tokens,
# 0.56 s of a 5.9 s run at MFU 33%, run_head_figures.sh in session 21): bench.profile_phase=prefill with PDL on (the
# default) and off (each kernel's own time), then the same protocol with twice the token budget a step
# (scheduler.max_num_batched_tokens=16384: fewer, larger prefill GEMMs). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
for pdl in 1 0; do
  nano_part "prefill_pdl$pdl" SPMD_PDL=$pdl -- bench.profile=true bench.profile_phase=prefill bench.profile_top=16
  nano_summary "prefill_pdl$pdl"; grep -A17 "^profile of" "$OUT/prefill_pdl$pdl.txt" | cut -c1-150
done
nano_part budget_16k -- scheduler.max_num_batched_tokens=16384
nano_summary budget_16k
rm -rf "$OUT"/*.json "$OUT"/*.run
