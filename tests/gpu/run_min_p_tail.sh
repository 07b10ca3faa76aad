#!/usr/bin/env bash
# One 1-GPU device call (~4 min): min-p rows without top_k take the 1024 candidates and, past them, tail_floor's
# one-pass min-p floor instead of a full sort (session 24). Before, on an H200 (run_fused_thresholds.sh), the sampler
# micro benchmark's min_p 0.05 (randn x 3 logits, vocabulary 151936) took 3.54 ms of GPU time at 256 rows and 0.67 at
# 16. The kernel and sampler tests in bf16 on the card, the micro benchmark, then Qwen3-0.6B decode @1k with min_p
# 0.05 alone and with Qwen3's filters (greedy before: bs256 9.1 ms, bs16 1.7, bs1 1.1), with any kernel compiled
# inside a timed case reported (the startup pass must have met every variant). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 240 tests/kernels/test_sampling.py tests/kernels/test_filter_thresholds.py \
  tests/test_sampler_filters.py tests/test_sampler_dtypes.py tests/test_penalty_state.py
part micro 150 python3 tests/gpu/bench_sampler.py --batches 1,16,256
grep -E "^S=" "$OUT/micro.txt" | grep -v -E "torch\.|penalt|repetition|greedy|temperature" | head -16
for name in min_p qwen3; do
  case $name in
    min_p) args=(sampling.temperature=1.0 sampling.min_p=0.05) ;;
    qwen3) args=(sampling.temperature=0.6 sampling.top_p=0.95 sampling.top_k=20) ;;
  esac
  part "$name" 100 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=decode \
    'bench.batch_sizes=[256,16,1]' bench.context=1024 bench.output="$OUT/$name.json" "${args[@]}"
  echo "--- $name: ${args[*]}"; grep -E "^decode bs|Error|compiled during" "$OUT/$name.txt" | cut -c1-110
done
rm -rf "$OUT"/*.json "$OUT"/*.run
