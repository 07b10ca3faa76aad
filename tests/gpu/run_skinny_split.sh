#!/usr/bin/env bash
# One 1-GPU device call (~4 min): SPMD_SKINNY_SPLIT (on by default since session 21): decode products of at most 16
# rows over weights below 16 MB go to skinny_gemm with K split over programs instead of cuBLAS. The skinny kernel's
# tests on the GPU (split model shapes included), the Qwen3 check against transformers with it on, Qwen3-0.6B decode
# @600 bs1 / bs16 on / off, the kernel alone against cuBLAS with a tile x split sweep (bench_small_gemm.py --skinny:
# retune skinny_split_k / the config from it), and the nano-vllm protocol on / off. Session 21: bs1 1.1 against
# 1.4 ms, bs16 1.6 against 1.7, nano-vllm the same; the sweep's best splits made one wave of programs.
# Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 150 tests/kernels/test_skinny_gemm.py tests/kernels/test_pdl.py tests/kernels/test_fp8_linear.py
check_part 120 SPMD_SKINNY_SPLIT=1 --model qwen3 --layouts 1x1 \
  --num-prompts 8 --out /tmp/chk_split
switch_parts decode SPMD_SKINNY_SPLIT 90 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=decode \
  'bench.batch_sizes=[16,1]' bench.context=600 bench.repeats=2 bench.output=$OUT/decode.json
part sweep 240 python3 tests/gpu/bench_small_gemm.py --skinny
grep -v "^ *(" "$OUT/sweep.txt" | grep -E "rows|WRONG|Error" | cut -c1-220
nano_part nano_split_1 SPMD_SKINNY_SPLIT=1
nano_part nano_split_0 SPMD_SKINNY_SPLIT=0
rm -rf "$OUT"/*.json "$OUT"/*.run
