#!/usr/bin/env bash
# One 1-GPU device call (~6 min, meant for an H100, after run_h100_session.sh): the issue-4 nano-vllm target,
# Qwen3-0.6B under nano-vllm's protocol (256 sequences, input and output lengths uniform in 100..1024, ignore_eos)
# against transformers generate on the same prompts in the same run (bench.baseline=hf, batches of 64 as the issue
# measured it), then where the engine's decode step goes (bench.profile=true). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
part qwen_nano 330 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=nano_vllm bench.baseline=hf \
  bench.hf_batch_size=64 bench.output=$OUT/qwen_nano.json
grep -A12 "^model " "$OUT/qwen_nano.txt" | grep -v "^results"
part nano_profile 150 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=nano_vllm bench.profile=true \
  bench.profile_top=20 bench.output=$OUT/nano_profile.json
grep -E "^nano_vllm" "$OUT/nano_profile.txt" | cut -c1-150; grep -A22 "^profile of" "$OUT/nano_profile.txt"
rm -rf "$OUT"/*.run "$OUT"/*.json
