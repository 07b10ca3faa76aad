#!/usr/bin/env bash
# One 1-GPU device call (~5 min), session 19: fp8_linear fetching its first weight tile before the PDL wait (as
# skinny_gemm does), A/B against the kernel that waits first (tests/gpu/fp8_late_weights.patch), interleaved twice:
# Llama-3-8B decode @1k bs64 / 32 / 16 / 1 with float8 linear layers. Before that the kernel's GPU tests, and a sweep
# of decode tiles at 24-64 rows over the 8B shapes (session 19's first sweep: at 32 rows 64 x 64 beat the default
# 16 x 64 on every narrow projection; at 64 rows 32 x 128 transposed took the down projection 38.1 -> 29.4 us).
# Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 120 tests/kernels/test_fp8_linear.py
part tune 150 python3 tests/gpu/tune_fp8_linear.py --shapes 8b --rows 24,32,48,64 \
  --tiles '16,64,4,6;32,64,4,6;32,64,4,4;64,64,4,4;32,128,4,4;32,128,4,3;64,128,4,4' --swap 1 --jobs 12
grep -E "^(llama|qwen)|^ *[0-9.]+ us|summary|rows=" "$OUT/tune.txt" | cut -c1-120
ab_parts early tests/gpu/fp8_late_weights.patch 90 python3 -m spmd_infer.bench bench.preset=llama-3-8b \
  bench.workload=decode 'bench.batch_sizes=[64,32,16,1]' bench.context=1024 model.linear_dtype=fp8 \
  bench.output=$OUT/decode.json
for run in new1 old1 new2 old2; do echo "--- $run"; grep -E "^decode bs|Error" "$OUT/early_$run.txt" | cut -c1-110; done
rm -rf "$OUT"/*.json "$OUT"/*.run
