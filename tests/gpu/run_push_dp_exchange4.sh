#!/usr/bin/env bash
# One 2-GPU device call (~6 min), after run_push_dp_exchange3.sh: the 2-GPU workers after their shared start moved
# into tests/support/cuda_rank.py, then Qwen3-30B-A3B (the other MoE preset) decode @1k at dp2 + DP attention with the
# exchanges on the push kernel and on NCCL, and at tp2, batches 512 / 128 / 2 over both GPUs. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
test_part tests 150 tests/test_symm_all_reduce.py tests/test_dp_exchange.py
qwen() { part "$1" 140 env SPMD_PUSH_DP_EXCHANGE="$2" torchrun --nproc-per-node 2 -m spmd_infer.bench \
  bench.preset=qwen3-30b-a3b bench.workload=decode bench.context=1024 'bench.batch_sizes=[512,128,2]' \
  bench.output="$OUT/$1.json" "${@:3}"
  echo "--- $1 (SPMD_PUSH_DP_EXCHANGE=$2) ${*:3}"; grep -E "^decode bs|Error" "$OUT/$1.txt" | cut -c1-110; }
qwen moe_dpa_push 1 parallel.dp=2 parallel.dp_attention=true scheduler.max_num_seqs=256
qwen moe_dpa_nccl 0 parallel.dp=2 parallel.dp_attention=true scheduler.max_num_seqs=256
qwen moe_tp2 1 parallel.tp=2 scheduler.max_num_seqs=512
rm -rf "$OUT"/*.json "$OUT"/*.run
