#!/usr/bin/env bash
# One 1-GPU device call (~3 min): Qwen3-0.6B decode @1k at bs16 / bs1, its checkpoint's filters (top_k 20, top_p
# 0.95) against greedy, interleaved twice with three repeats each: where the sampler's host time shows (session 24:
# 1.2 / 1.7 ms at bs1 in two calls on two hosts, greedy 1.1). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
for run in 1 2; do
  for name in sampled greedy; do
    args=(); [[ $name == sampled ]] && args=(sampling.temperature=0.6 sampling.top_p=0.95 sampling.top_k=20)
    part "${name}_$run" 80 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=decode \
      'bench.batch_sizes=[16,1]' bench.context=1024 bench.repeats=3 bench.output="$OUT/${name}_$run.json" "${args[@]}"
    echo "--- ${name} $run"; grep -E "^decode bs|Error|compiled during|runs:" "$OUT/${name}_$run.txt" | cut -c1-110
  done
done
rm -rf "$OUT"/*.json "$OUT"/*.run
