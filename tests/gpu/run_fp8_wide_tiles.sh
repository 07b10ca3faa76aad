#!/usr/bin/env bash
# One 1-GPU device call (~4 min), for session 19: SPMD_FP8_WIDE_TILES (built in session 18 after its device time,
# off): fp8_linear at decode over wide weights (2+ tiles of 64 rows an SM, such as Llama-3-8B's gate_up) takes 128
# weight rows a program, 32 x 128 transposed up to 32 rows and 64 x 128 up to 64. Session 18's sweep of those tiles
# (call 10): gate_up at 16 rows 32.6 against 41.0 us, at 64 rows 37.3 against 44.3; 1 and 32 rows not timed. The
# tiles' GPU test; tune_fp8_linear.py at 1-64 rows with it on (each shape's default marked); Llama-3-8B decode
# bs64 / bs16 / bs1 @1k with float8 linear layers, on / off (session 18 off: 6.7 / - / 3.2 ms). Turn it on if no
# row count is slower. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 60 tests/kernels/test_fp8_linear.py -k cuda_tiles
part tune 90 env SPMD_FP8_WIDE_TILES=1 python3 tests/gpu/tune_fp8_linear.py --shapes llama3 --rows 1,16,32,64 \
  --tiles '16,64,4,6;64,64,4,4;32,128,4,4;64,128,4,4' --swap 1 --jobs 12
grep -E "rows=.*activations fp8|\(default\)" "$OUT/tune.txt" | cut -c1-150
switch_parts decode SPMD_FP8_WIDE_TILES 80 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
  'bench.batch_sizes=[64,16,1]' bench.context=1024 model.linear_dtype=fp8 bench.output=$OUT/decode.json
rm -rf "$OUT"/*.json "$OUT"/*.run
