#!/usr/bin/env bash
# One 1-GPU device call (~6 min): sampling with checkpoints' default filters and penalties after session 23's
# rework (penalty counts on the device, engine/penalty_state.py; every filter a per-row threshold inside the fused
# Gumbel kernel, layers/sampler.py). Before it, on an H200 (run_sampling_cost.sh): Qwen3-0.6B decode @1k with
# Qwen2.5's defaults (temperature 0.7, top_p 0.8, top_k 20, repetition 1.05) 94.9 ms per step at batch 256 and
# 26.0 ms at 64, against 9.1 / 3.5 ms greedy; the sampler alone at 256 rows: top_k 20 + top_p 11.7 ms, top_p 9.4 ms,
# the repetition penalty 83 ms. The kernels and the sampler's tests in bf16 on the card, the sampler's parts alone,
# the host-sync probe over penalized overlapped steps, then decode with each checkpoint family's defaults. Carry
# [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 200 tests/kernels/test_penalties.py tests/kernels/test_sampling.py tests/test_sampler_dtypes.py \
  tests/test_sampler_filters.py tests/test_penalty_state.py
part micro 150 python3 tests/gpu/bench_sampler.py
grep -v Warning "$OUT/micro.txt" | head -40
part syncs 120 python3 tests/gpu/find_step_syncs.py bench.output="$OUT/syncs.json" bench.preset=qwen3-0.6b \
  bench.workload=decode 'bench.batch_sizes=[64]' bench.context=1024 sampling.temperature=0.7 sampling.top_p=0.8 \
  sampling.top_k=20 sampling.repetition_penalty=1.05
grep -E -A6 "^SYNCS|Error" "$OUT/syncs.txt" | cut -c1-200 | head -20
decode_part qwen25 qwen3-0.6b -- sampling.temperature=0.7 sampling.top_p=0.8 sampling.top_k=20 \
  sampling.repetition_penalty=1.05
decode_part qwen3 qwen3-0.6b -- sampling.temperature=0.6 sampling.top_p=0.95 sampling.top_k=20
decode_part llama3_8b llama-3-8b -- sampling.temperature=0.6 sampling.top_p=0.9
decode_part llama3_8b_greedy llama-3-8b
# warm_sampler runs at max_num_seqs rows inside the warmup: its seconds and the KV cache it leaves, sampled vs greedy
for f in qwen25 llama3_8b llama3_8b_greedy; do echo "--- $f"; grep -E "startup|KV cache:" "$OUT/$f.txt" | cut -c1-200; done
rm -rf "$OUT"/*.json "$OUT"/*.run
