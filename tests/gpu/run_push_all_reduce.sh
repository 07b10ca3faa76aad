#!/usr/bin/env bash
# One 2-GPU device call (~7 min): the push all-reduce (kernels/push_all_reduce.py, session 25), which ends in the
# RMSNorm after o_proj and down_proj at TP decode. Before it, Llama-3-8B tp2 bs1 @1k spent 452 us a step in 65
# one-shot all-reduces (7.0 us each) and 138 us in 65 RMSNorms (run_tp2_bs1_profile.sh). The kernel tests on the card
# (bf16 too) and the 2-GPU test against NCCL, the micro-benchmark (push, and push ending in the norm, against the
# one-shot kernel and the one-shot kernel then the norm), the Qwen3 check at tp2, then Llama-3-8B tp2 decode with it
# on and off (SPMD_PUSH_ALL_REDUCE) and a bs1 profile with it on. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
test_part tests 300 tests/test_symm_all_reduce.py tests/kernels/test_push_all_reduce.py tests/kernels/test_rmsnorm.py
part micro 120 torchrun --nproc-per-node 2 tests/gpu/bench_all_reduce.py --rows 1,4,16,64,128,256,1024
grep -v -i warn "$OUT/micro.txt" | head -12
check_part 200 --model qwen3 --layouts 1x2 --num-prompts 8 --out /tmp/chk_push
grep -E "symmetric memory" "$OUT/check.txt" | head -2 | cut -c1-220
switch_parts decode SPMD_PUSH_ALL_REDUCE 150 torchrun --nproc-per-node 2 -m spmd_infer.bench parallel.tp=2 \
  bench.preset=llama-3-8b bench.workload=decode 'bench.batch_sizes=[256,64,16,1]' bench.context=1024 \
  bench.repeats=2
part prof 150 torchrun --nproc-per-node 2 -m spmd_infer.bench parallel.tp=2 bench.preset=llama-3-8b \
  bench.workload=decode 'bench.batch_sizes=[1]' bench.context=1024 bench.repeats=1 bench.profile=true \
  bench.profile_top=12 bench.output="$OUT/prof.json"
grep -E "^decode bs" "$OUT/prof.txt" | cut -c1-120; grep -A12 "^profile of" "$OUT/prof.txt" | cut -c1-150
rm -rf "$OUT"/*.json "$OUT"/*.run
