#!/usr/bin/env bash
# One 2-GPU device call (~7 min), after run_push_dp_exchange2.sh: whether DP attention on a dense model still loses to
# decoupled DP now that its exchanges take the push kernel (session 21: Qwen3-8B nano-vllm dp2 13.4k tok/s with DP
# attention against 14.5-14.9k without): Qwen3-8B nano-vllm at dp2 + DP attention with the exchanges on the push
# kernel and on NCCL, then decoupled dp2; and DeepSeek-V2-Lite tp2 decode @1k at the batches run_push_dp_exchange2.sh
# times at dp2 + DP attention. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
qwen() { part "$1" 140 env SPMD_PUSH_DP_EXCHANGE="$2" torchrun --nproc-per-node 2 -m spmd_infer.bench \
  bench.preset=qwen3-8b bench.workload=nano_vllm parallel.dp=2 bench.output="$OUT/$1.json" "${@:3}"
  echo "--- $1 (SPMD_PUSH_DP_EXCHANGE=$2) ${*:3}"; grep -E "^nano_vllm|Error" "$OUT/$1.txt" | cut -c1-120
  nano_summary "$1"; }
qwen qwen_dpa_push 1 parallel.dp_attention=true
qwen qwen_dpa_nccl 0 parallel.dp_attention=true
qwen qwen_dp2 1
part ds_tp2 150 torchrun --nproc-per-node 2 -m spmd_infer.bench bench.preset=deepseek-v2-lite bench.workload=decode \
  bench.context=1024 'bench.batch_sizes=[512,128,2]' parallel.tp=2 scheduler.max_num_seqs=512
echo "--- ds_tp2"; grep -E "^decode bs|Error" "$OUT/ds_tp2.txt" | cut -c1-110
rm -rf "$OUT"/*.run
