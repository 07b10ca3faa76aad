#!/usr/bin/env bash
# One 1-GPU device call (~5 min), session 19: decode-sized GEMMs (skinny_gemm for bf16 qkv / o, the float8 linear
# kernel up to 64 rows) ask L2 for their weight rows before their PDL wait (SPMD_L2_PREFETCH_MB, 24 MiB a launch),
# on / off: the kernels' GPU tests with it on, then Llama-3-8B decode @1k in bf16 (bs16 / bs1, twice each way) and
# with float8 linear layers (bs64 / bs16 / bs1). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 150 tests/kernels/test_skinny_gemm.py tests/kernels/test_qkv_rope_store.py \
  tests/kernels/test_fp8_linear.py tests/kernels/test_pdl.py
decode() { local name=$1 mb=$2; shift 2
  part "$name" 80 env SPMD_L2_PREFETCH_MB="$mb" python3 -m spmd_infer.bench bench.preset=llama-3-8b \
    bench.workload=decode bench.context=1024 bench.output="$OUT/$name.json" "$@"
  echo "--- $name: SPMD_L2_PREFETCH_MB=$mb $*"; grep -E "^decode bs|Error" "$OUT/$name.txt" | cut -c1-110; }
for run in 1 2; do
  for mb in 24 0; do decode "bf16_${mb}_$run" "$mb" 'bench.batch_sizes=[16,1]'; done
done
for mb in 24 0; do decode "fp8_$mb" "$mb" 'bench.batch_sizes=[64,16,1]' model.linear_dtype=fp8; done
rm -rf "$OUT"/*.json "$OUT"/*.run
