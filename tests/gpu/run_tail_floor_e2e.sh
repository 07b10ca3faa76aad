#!/usr/bin/env bash
# One 1-GPU device call (~2 min): tail_floor at 1024-wide tiles over 16 warps (run_tail_floor_tune.sh: 2.5x faster
# on flat rows than 256 x 4). Its kernel tests in bf16 on the card, then random-weight Llama-3-8B decode @1k with
# top_p 0.9, where every row searches (before: bs1 5.7 ms, bs16 6.8, against greedy 4.5 / ~5). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 150 tests/kernels/test_sampling.py tests/test_sampler_filters.py
part llama 100 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode 'bench.batch_sizes=[64,16,1]' \
  bench.context=1024 bench.output="$OUT/llama.json" sampling.temperature=0.6 sampling.top_p=0.9
grep -E "^decode bs|Error|compiled during" "$OUT/llama.txt" | cut -c1-110
rm -rf "$OUT"/*.json "$OUT"/*.run
