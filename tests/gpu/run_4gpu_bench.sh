#!/usr/bin/env bash
# One 4-GPU device call (~6 min): tiny Llama dp2 x tp2 vs transformers; DeepSeek-V2-Lite (full config, random
# weights, graphed MLA) decode with dp4 + DP attention vs tp4 at the same total batch, each logging its KV
# capacity (max_model_len at the model's limit, so memory decides); Qwen3-8B nano-vllm protocol dp4 vs dp1.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
table() { grep -h "KV cache:" "$OUT/$1.txt" | head -1 | sed 's/.*INFO\] //'; grep -A6 "^model " "$OUT/$1.txt" | grep -v "^results"; }
part tiny 80 python3 tests/gpu/check_vs_transformers.py --model tiny --layouts 2x2 --out /tmp/chk
grep -E "RESULT|Error" "$OUT/tiny.txt"
ds() { part "$1" 100 torchrun --nproc-per-node 4 -m spmd_infer.bench bench.preset=deepseek-v2-lite bench.workload=decode \
  'bench.batch_sizes=[1024]' bench.context=1024 bench.decode_steps=32 model.max_model_len=163840 \
  bench.output=$OUT/$1.json "${@:2}"; table "$1"; }
ds ds_dp4 parallel.dp=4 parallel.dp_attention=true scheduler.max_num_seqs=256
ds ds_tp4 parallel.tp=4 scheduler.max_num_seqs=1024
part qwen8_dp4 90 torchrun --nproc-per-node 4 -m spmd_infer.bench bench.preset=qwen3-8b bench.workload=nano_vllm \
  parallel.dp=4 bench.output=$OUT/qwen8_dp4.json
table qwen8_dp4
part qwen8_dp1 120 python3 -m spmd_infer.bench bench.preset=qwen3-8b bench.workload=nano_vllm bench.output=$OUT/qwen8_dp1.json
table qwen8_dp1
