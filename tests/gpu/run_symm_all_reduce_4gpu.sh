#!/usr/bin/env bash
# One 4-GPU device call (~5 min), when a 4-GPU kind is lent: whether parallel.all_reduce=auto should take 4-rank TP
# groups too (session 24 measured 2 only: AUTO_WORLD_SIZES in spmd_infer/parallel/symm_all_reduce.py). The 2-GPU
# sums test, NCCL against the symmetric one-shot / two-shot all-reduces at 4 ranks (bench_all_reduce.py: where
# they cross decides ONE_SHOT_MAX_BYTES there), the Qwen3 check at tp4 forced symmetric, then Llama-3-8B tp4 decode
# @1k and prefill 8 x 2048 with symmetric against nccl. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -4
test_part tests 200 tests/test_symm_all_reduce.py
part micro 120 torchrun --nproc-per-node 4 tests/gpu/bench_all_reduce.py --rows 1,16,64,128,256,1024,4096
grep -v -i warn "$OUT/micro.txt" | head -14
check_part 250 --model qwen3 --layouts 1x4 --num-prompts 8 --out /tmp/chk_symm4 --extra parallel.all_reduce=symmetric
for mode in symmetric nccl; do
  part "decode_$mode" 150 torchrun --nproc-per-node 4 -m spmd_infer.bench bench.preset=llama-3-8b \
    bench.workload=decode 'bench.batch_sizes=[256,64,16,1]' bench.context=1024 parallel.tp=4 bench.repeats=2 \
    parallel.all_reduce=$mode bench.output="$OUT/decode_$mode.json"
  echo "--- decode all_reduce=$mode"; grep -E "^decode bs|Error" "$OUT/decode_$mode.txt" | cut -c1-110
done
rm -rf "$OUT"/*.json "$OUT"/*.run
