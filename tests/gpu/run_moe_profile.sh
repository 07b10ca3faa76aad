#!/usr/bin/env bash
# One 4-GPU device call (~6 min): where DeepSeek-V2-Lite decode time goes (dp4 + DP attention at bs1024 @1k ran at
# MBU 19%): profiled decode steps for dp4 + DP attention and tp4, then the fused-MoE tile sweep on one GPU.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
ds() { part "$1" 150 torchrun --nproc-per-node 4 -m spmd_infer.bench bench.preset=deepseek-v2-lite bench.workload=decode \
  'bench.batch_sizes=[1024]' bench.context=1024 bench.decode_steps=32 bench.profile=true bench.profile_top=15 \
  bench.output=$OUT/$1.json "${@:2}"; grep -A22 "^case " "$OUT/$1.txt" | grep -v "^results"; }
ds ds_dp4 parallel.dp=4 parallel.dp_attention=true scheduler.max_num_seqs=256
ds ds_tp4 parallel.tp=4 scheduler.max_num_seqs=1024
CUDA_VISIBLE_DEVICES=0 part tune_moe 200 python3 tests/gpu/tune_fused_moe.py
tail -50 "$OUT/tune_moe.txt"
