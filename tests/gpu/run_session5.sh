#!/usr/bin/env bash
# One 4-GPU device call (~6 min) for what session 4 could not measure (no 4-GPU kind until its device time was
# spent): the DP-metadata exchange at dp4 through host shared memory (Qwen3-8B nano-vllm dp4, decode profiled; the
# issue's target is <= 2% of the step), Qwen3-8B dp1 in the same run for the ratio, and DeepSeek-V2-Lite decode
# dp4 + DP attention vs tp4 with session 4's MoE routing / k-sum kernels and MLA tiles (1.74x before them).
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
rows() { grep -h "DP metadata exchange:" "$OUT/$1.txt" | head -1 | sed 's/.*INFO\] //'
         grep -A12 "^case " "$OUT/$1.txt" | grep -v "^results" | head -13; grep -h "Error" "$OUT/$1.txt" | tail -2; }
part qwen8_dp4 120 torchrun --nproc-per-node 4 -m spmd_infer.bench bench.preset=qwen3-8b bench.workload=nano_vllm \
  parallel.dp=4 bench.profile=true bench.profile_top=8 bench.output=$OUT/qwen8_dp4.json
rows qwen8_dp4
part qwen8_dp1 120 python3 -m spmd_infer.bench bench.preset=qwen3-8b bench.workload=nano_vllm \
  bench.output=$OUT/qwen8_dp1.json
rows qwen8_dp1
ds() { part "$1" 150 torchrun --nproc-per-node 4 -m spmd_infer.bench bench.preset=deepseek-v2-lite \
  bench.workload=decode 'bench.batch_sizes=[1024]' bench.context=1024 bench.decode_steps=32 \
  bench.output=$OUT/$1.json "${@:2}"; rows "$1"; }
ds ds_dp4 parallel.dp=4 parallel.dp_attention=true scheduler.max_num_seqs=256
ds ds_tp4 parallel.tp=4 scheduler.max_num_seqs=1024
rm -rf "$OUT"/*.run  # run dirs: too many files for the device tool to bring back
