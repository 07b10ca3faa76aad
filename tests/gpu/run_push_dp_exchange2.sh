#!/usr/bin/env bash
# One 2-GPU device call (~6 min), after run_push_dp_exchange.sh: DeepSeek-V2-Lite decode @1k at dp2 + DP attention
# with DP attention's exchanges on the push kernel and on NCCL (SPMD_PUSH_DP_EXCHANGE=1 / 0), batches 512 / 128 / 2
# over both DP groups, twice each way interleaved; the layout line says which path ran. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
ds() { part "$1" 150 env SPMD_PUSH_DP_EXCHANGE="$2" torchrun --nproc-per-node 2 -m spmd_infer.bench \
  bench.preset=deepseek-v2-lite bench.workload=decode bench.context=1024 'bench.batch_sizes=[512,128,2]' \
  parallel.dp=2 parallel.dp_attention=true scheduler.max_num_seqs=256 bench.output="$OUT/$1.json"
  echo "--- $1 (SPMD_PUSH_DP_EXCHANGE=$2)"; grep -E "^decode bs|Error" "$OUT/$1.txt" | cut -c1-110
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['layout'])" "$OUT/$1.json" 2>/dev/null; }
ds push1 1; ds nccl1 0; ds push2 1; ds nccl2 0
rm -rf "$OUT"/*.run
