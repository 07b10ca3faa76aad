#!/usr/bin/env bash
# One 1-GPU device call (~5 min), session 19: fp8_linear's decode tiles after the early weight fetch: 17-32 rows
# take 64 x 64 (session 19's sweep: 0.83x the time of 16 x 64 over the 8B shapes), and wide tiles only where they
# fill their waves as well as the narrow ones (Qwen3-8B's gate_up no longer). A sweep at 1 and 16 rows over the 8B
# and 0.6B shapes, then end to end against the old choice (tests/gpu/fp8_old_tiles.patch): Llama-3-8B bs32 / bs1 and
# Qwen3-8B bs64 / 32 / 16 / 1 @1k with float8 linear layers. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
part tune 120 python3 tests/gpu/tune_fp8_linear.py --rows 1,16 \
  --tiles '16,64,4,6;32,64,4,6;32,128,4,4;64,64,4,4;64,128,4,4' --swap 1 --jobs 12
grep -A3 summary "$OUT/tune.txt" | cut -c1-200
old=$(patched_kernels tiles tests/gpu/fp8_old_tiles.patch)
bench=(python3 -m spmd_infer.bench bench.workload=decode bench.context=1024 model.linear_dtype=fp8
  bench.output="$OUT/decode.json")
for run in new old; do
  pp=$PYTHONPATH; [[ $run == old ]] && pp=$old
  part llama_$run 90 env PYTHONPATH="$pp" "${bench[@]}" bench.preset=llama-3-8b 'bench.batch_sizes=[32,1]'
done
for run in new1 old1 new2 old2; do
  pp=$PYTHONPATH; [[ $run == old* ]] && pp=$old
  part qwen_$run 90 env PYTHONPATH="$pp" "${bench[@]}" bench.preset=qwen3-8b \
    'bench.batch_sizes=[64,32,16,1]'
done
for f in llama_new llama_old qwen_new1 qwen_old1 qwen_new2 qwen_old2; do
  echo "--- $f"; grep -E "^decode bs|Error" "$OUT/$f.txt" | cut -c1-110; done
rm -rf "$OUT"/*.json "$OUT"/*.run
