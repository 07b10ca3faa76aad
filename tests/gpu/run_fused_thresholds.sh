#!/usr/bin/env bash
# One 2-GPU device call (~6 min): session 24's second half. (1) The sampler's threshold in one launch
# (kernels/filter_thresholds.py) and its parameters uploaded as typed views (no conversion kernels): before it
# Qwen3-0.6B decode @1k with its checkpoint's filters took 1.5 ms a step at bs1 against 1.1 greedy, 2.0 against
# 1.7 at bs16 (run_symm_all_reduce.sh). The kernel and sampler tests in bf16 on the card, the sampler micro
# benchmark, then decode sampled against greedy. (2) The symmetric all-reduce with one-shot up to 1 MiB (the first
# run two-shot 512 KiB messages: Llama-3-8B tp2 bs64 5.4 ms against NCCL's 5.2): auto against nccl. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
test_part tests 240 tests/kernels/test_filter_thresholds.py tests/kernels/test_sampling.py \
  tests/test_sampler_filters.py tests/test_sampler_dtypes.py tests/test_penalty_state.py tests/test_symm_all_reduce.py
part micro 150 python3 tests/gpu/bench_sampler.py --batches 1,16,256
grep -E "^S=" "$OUT/micro.txt" | grep -v -E "torch\.|penalt|repetition" | head -24
decode_small() {
  part "$1" 90 python3 -m spmd_infer.bench bench.preset="$2" bench.workload=decode 'bench.batch_sizes=[16,1]' \
    bench.context=1024 bench.repeats=2 bench.output="$OUT/$1.json" "${@:3}"
  echo "--- $1: ${*:3}"; grep -E "^decode bs|Error" "$OUT/$1.txt" | cut -c1-110
}
decode_small qwen3_sampled qwen3-0.6b sampling.temperature=0.6 sampling.top_p=0.95 sampling.top_k=20
decode_small qwen3_greedy qwen3-0.6b
decode_small llama_top_p llama-3-8b sampling.temperature=0.6 sampling.top_p=0.9
all_reduce_parts decode 150 bench.preset=llama-3-8b bench.workload=decode 'bench.batch_sizes=[256,64,1]' \
  bench.context=1024 bench.repeats=2
rm -rf "$OUT"/*.json "$OUT"/*.run
