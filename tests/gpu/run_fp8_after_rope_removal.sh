#!/usr/bin/env bash
# One 1-GPU device call (~2.5 min), session 20: fp8_linear after its ROPE mode was removed (a60e67b): its kernel
# tests, the qkv epilogue's (bf16, unchanged) and the PDL rule's on the GPU, and Llama-3-8B's float8 decode @1k
# bs64 / bs16 / bs1 (session 20 before the removal, switch off: 6.2 / 4.0 / 3.0 ms). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 150 tests/kernels/test_fp8_linear.py tests/kernels/test_qkv_rope_store.py tests/kernels/test_pdl.py
part decode 90 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode 'bench.batch_sizes=[64,16,1]' \
  bench.context=1024 model.linear_dtype=fp8 bench.output=$OUT/decode.json
grep -E "^decode bs|Error" "$OUT/decode.txt" | cut -c1-110
rm -rf "$OUT"/*.json "$OUT"/*.run
