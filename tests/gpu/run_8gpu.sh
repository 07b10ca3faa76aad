#!/usr/bin/env bash
# Issue 7 on an 8-GPU kind (nvidia-h100-x8 / nvidia-h200-x8), one device call (~9 min), bf16, random weights:
# DeepSeek-V2-Lite (full config) decode at dp8 + DP attention vs tp8 vs dp4 x tp2 (DP attention), each logging its
# KV capacity; Qwen3-8B nano-vllm dp8 vs dp1; the no-hang matrix (fewer prompts than DP ranks, one DP rank's
# prompt 20x the others', skewed finishes, invalid rows) at world 8 in both DP modes.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1; nvidia-smi -L | wc -l
table() { grep -h "KV cache:" "$OUT/$1.txt" | head -1 | sed 's/.*INFO\] //'; grep -A6 "^case " "$OUT/$1.txt" | grep -v "^results"; }
ds() { part "$1" 110 torchrun --nproc-per-node 8 -m spmd_infer.bench bench.preset=deepseek-v2-lite bench.workload=decode \
  'bench.batch_sizes=[2048]' bench.context=1024 bench.decode_steps=32 model.max_model_len=163840 \
  bench.output=$OUT/$1.json "${@:2}"; table "$1"; }
ds ds_dp8 parallel.dp=8 parallel.dp_attention=true scheduler.max_num_seqs=256
ds ds_tp8 parallel.tp=8 scheduler.max_num_seqs=2048
ds ds_dp4tp2 parallel.dp=4 parallel.tp=2 parallel.dp_attention=true scheduler.max_num_seqs=512
part qwen8_dp8 90 torchrun --nproc-per-node 8 -m spmd_infer.bench bench.preset=qwen3-8b bench.workload=nano_vllm \
  parallel.dp=8 bench.output=$OUT/qwen8_dp8.json
table qwen8_dp8
part qwen8_dp1 100 python3 -m spmd_infer.bench bench.preset=qwen3-8b bench.workload=nano_vllm bench.output=$OUT/qwen8_dp1.json
table qwen8_dp1
( export SPMD_TEST_LAYOUTS=8x1,4x2; part nohang 150 python3 -m pytest -q -x tests/test_reliability.py -k no_hang_matrix )
tail -3 "$OUT/nohang.txt"
