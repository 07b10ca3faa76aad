#!/usr/bin/env bash
# One 2-GPU device call (~8 min): TP all-reduces through PyTorch symmetric memory (parallel.all_reduce, session 24;
# auto takes it for TP groups of 2). Before: Llama-3-8B at tp2 decodes @1k bs1 / bs16 / bs64 in 3.3 / 4.1 / 5.2 ms
# (run_all_reduce_probe.sh), 64 NCCL all-reduces a step. The 2-GPU test against NCCL's sums (eager and in CUDA
# graphs), the micro-benchmark with the ops as the engine calls them, the Qwen3 check against transformers at tp2,
# then Llama-3-8B tp2 decode and prefill 8 x 2048 with auto against nccl; last, Qwen3-0.6B decode at small batches
# with its checkpoint's sampling defaults against greedy (the sampler's host time where the GPU step is short).
# Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
test_part tests 240 tests/test_symm_all_reduce.py
part micro 100 torchrun --nproc-per-node 2 tests/gpu/bench_all_reduce.py --rows 1,64,256,2048,8192
grep -v -i warn "$OUT/micro.txt" | head -12
check_part 200 --model qwen3 --layouts 1x2 --num-prompts 8 --out /tmp/chk_symm
grep -E "symmetric memory" "$OUT/check.txt" | head -2 | cut -c1-200
all_reduce_parts decode 150 bench.preset=llama-3-8b bench.workload=decode 'bench.batch_sizes=[256,64,16,1]' \
  bench.context=1024 bench.repeats=2
all_reduce_parts prefill 120 bench.preset=llama-3-8b bench.workload=grid 'bench.grid_batch_sizes=[8]' \
  'bench.input_lens=[2048]' 'bench.output_lens=[1]'
decode_small() {
  part "$1" 90 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=decode 'bench.batch_sizes=[16,1]' \
    bench.context=1024 bench.output="$OUT/$1.json" "${@:2}"
  echo "--- $1: ${*:2}"; grep -E "^decode bs|Error" "$OUT/$1.txt" | cut -c1-110
}
decode_small qwen3_sampled sampling.temperature=0.6 sampling.top_p=0.95 sampling.top_k=20
decode_small qwen3_greedy
rm -rf "$OUT"/*.json "$OUT"/*.run
