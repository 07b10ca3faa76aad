#!/usr/bin/env bash
# One 2-GPU device call (~6 min), after run_push_all_reduce4.sh: the push kernel's peer rows at 16 bytes an
# instruction (session 25's `_slots` alignment hint, timed nowhere yet) against the 2-byte form it replaced
# (push_2byte.patch): the micro-benchmark both ways, then Llama-3-8B tp2 decode interleaved twice each way.
# Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
old=$(patched_kernels narrow tests/gpu/push_2byte.patch)
for way in wide narrow; do
  pp=$PYTHONPATH; [[ $way == narrow ]] && pp=$old
  part "micro_$way" 100 env PYTHONPATH="$pp" torchrun --nproc-per-node 2 tests/gpu/bench_all_reduce.py \
    --rows 1,16,64,133,256
  echo "--- $way"; grep -v -E "^W1|warn" "$OUT/micro_$way.txt" | head -8
done
ab_parts decode tests/gpu/push_2byte.patch 120 torchrun --nproc-per-node 2 -m spmd_infer.bench parallel.tp=2 \
  bench.preset=llama-3-8b bench.workload=decode 'bench.batch_sizes=[256,64,1]' bench.context=1024
for run in new1 old1 new2 old2; do echo "--- $run (old: 2-byte)"; grep -E "^decode bs|Error" "$OUT/decode_$run.txt" | cut -c1-100; done
rm -rf "$OUT"/*.json "$OUT"/*.run
