#!/usr/bin/env bash
# One GPU (~5 min): skinny_gemm and programmatic dependent launch (PDL) in the engine. Kernel tests in bf16 (skinny
# at model shapes vs fp64, and the kernels that trigger PDL), the 1.1B Llama vs transformers with decode batches
# <= 16 (the skinny path, in CUDA graphs), then Llama-3-8B decode bs16/bs1 @1k three ways: cuBLAS
# (SPMD_SKINNY_GEMM=0), skinny without PDL (SPMD_PDL=0), skinny with PDL (profiled at bs1).
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
rows() { grep -A4 "^case " "$OUT/$1.txt" | grep -v "^results"; grep -h "Error" "$OUT/$1.txt" | tail -2; }
part kernel_tests 200 python3 -m pytest -q tests/kernels/test_skinny_gemm.py tests/kernels/test_rmsnorm.py \
  tests/kernels/test_activation.py tests/kernels/test_decode_attention.py
grep -E "passed|failed|Mismatch|Greatest|Error" "$OUT/kernel_tests.txt" | head -12
export SPMD_SKINNY_GEMM=1  # the check runs the skinny path
part check_1b 150 python3 tests/gpu/check_vs_transformers.py --model 1b --layouts 1x1 --out /tmp/chk
grep -E "RESULT|Error" "$OUT/check_1b.txt"
llama() {  # name, then env assignments
  local name=$1; shift
  timeout 110 env "$@" python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode 'bench.batch_sizes=[16,1]' \
    bench.context=1024 bench.output=$OUT/$name.json $([ "$name" = skinny_pdl ] && echo bench.profile=true \
    bench.profile_top=14) > "$OUT/$name.txt" 2>&1
  echo "=== $name rc=$?"; rows "$name"
}
llama cublas SPMD_SKINNY_GEMM=0
llama skinny_nopdl SPMD_SKINNY_GEMM=1 SPMD_PDL=0
llama skinny_pdl SPMD_SKINNY_GEMM=1 SPMD_PDL=1
grep -A16 "^profile" "$OUT/skinny_pdl.txt" | head -17
rm -rf "$OUT"/*.run
