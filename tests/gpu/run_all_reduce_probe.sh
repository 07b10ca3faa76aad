#!/usr/bin/env bash
# One 2-GPU device call (~3 min): what a decode step's all-reduces cost under tensor parallelism. Llama-3-8B at tp2
# decodes bs1 in 3.3 ms (MBU ~55%) against 1.9 ms for its half of the weights: 64 NCCL all-reduces a step. Times
# NCCL against PyTorch's symmetric-memory one-shot / two-shot all-reduces inside CUDA graphs at decode and prefill
# sizes (bench_all_reduce.py), then Llama-3-8B's tp2 decode @1k as it stands (bs1 / bs16 / bs64). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
nvidia-smi topo -m | head -4
part micro 120 torchrun --nproc-per-node 2 tests/gpu/bench_all_reduce.py
grep -v -i warn "$OUT/micro.txt" | head -30
part micro_dsv2 60 torchrun --nproc-per-node 2 tests/gpu/bench_all_reduce.py --hidden 2048 --rows 1,64,256,1024
grep -v -i warn "$OUT/micro_dsv2.txt" | head -12
part llama_tp2 200 torchrun --nproc-per-node 2 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
  'bench.batch_sizes=[64,16,1]' bench.context=1024 parallel.tp=2 bench.output="$OUT/llama_tp2.json"
grep -E "^decode bs|Error" "$OUT/llama_tp2.txt" | cut -c1-110
rm -rf "$OUT"/*.json "$OUT"/*.run
