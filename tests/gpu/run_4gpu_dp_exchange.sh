#!/usr/bin/env bash
# One 4-GPU device call (~7 min), after run_4gpu_bench.sh: DP attention's exchanges on the push kernel at 4 ranks
# (session 26 measured 2; `auto` takes it for 2 only, parallel.all_reduce=symmetric forces it). The tiny Llama at dp2 x
# tp2 + DP attention forced symmetric against transformers (the reduce-scatter over 4 ranks in blocks of 2, the
# gather over each TP index's DP group, attention's TP reduce in the norm), then DeepSeek-V2-Lite dp4 + DP attention
# decode symmetric against auto (NCCL's exchanges at 4 ranks), and Qwen3-8B nano-vllm dp4 + DP attention symmetric
# (issue 4's dp4 >= 3.6x dp1 target: run_4gpu_bench.sh's dp1 and decoupled dp4 beside it). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -4
table() { grep -A6 "^model " "$OUT/$1.txt" | grep -v "^results"; grep -h "Error" "$OUT/$1.txt" | tail -2
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['layout'])" "$OUT/$1.json" 2>/dev/null; }
part tiny 100 python3 tests/gpu/check_vs_transformers.py --model tiny --layouts 2x2 --out /tmp/chk \
  --extra parallel.dp_attention=true parallel.all_reduce=symmetric
grep -E "RESULT|Error" "$OUT/tiny.txt"
for mode in symmetric auto; do
  part "ds_dp4_$mode" 110 torchrun --nproc-per-node 4 -m spmd_infer.bench bench.preset=deepseek-v2-lite \
    bench.workload=decode 'bench.batch_sizes=[1024,256,4]' bench.context=1024 bench.decode_steps=32 \
    parallel.dp=4 parallel.dp_attention=true scheduler.max_num_seqs=256 parallel.all_reduce=$mode \
    bench.output="$OUT/ds_dp4_$mode.json"
  table "ds_dp4_$mode"
done
part qwen8_dp4_dpa 110 torchrun --nproc-per-node 4 -m spmd_infer.bench bench.preset=qwen3-8b \
  bench.workload=nano_vllm parallel.dp=4 parallel.dp_attention=true parallel.all_reduce=symmetric \
  bench.output="$OUT/qwen8_dp4_dpa.json"
table qwen8_dp4_dpa
rm -rf "$OUT"/*.run
