#!/usr/bin/env bash
# One GPU (~4 min): Llama-3-8B bs1 @1k decode profiles with skinny_gemm on the small projections only (qkv, o:
# SPMD_SKINNY_MAX_MB=64, the default) or on every projection, against all-cuBLAS; the 1.1B Llama vs transformers on
# that path. (Session 7 also ran skinny without programmatic dependent launch, 76.6% MBU against 77.6% for cuBLAS;
# layers/linear.py now takes skinny_gemm only with PDL on, so SPMD_PDL=0 means cuBLAS.)
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
for variant in "0 1 inf" "1 1 64" "1 1 inf"; do
  read -r skinny pdl max_mb <<< "$variant"
  export SPMD_SKINNY_GEMM=$skinny SPMD_PDL=$pdl SPMD_SKINNY_MAX_MB=$max_mb
  name=bs1_skinny${skinny}_pdl${pdl}_max$max_mb
  part $name 110 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
    'bench.batch_sizes=[1]' bench.context=1024 bench.profile=true bench.profile_top=14 bench.output=$OUT/$name.json
  grep -A1 "^case " "$OUT/$name.txt"; grep -A14 "^profile of" "$OUT/$name.txt"
done
export SPMD_SKINNY_GEMM=1 SPMD_PDL=1 SPMD_SKINNY_MAX_MB=64
part check_1b 100 python3 tests/gpu/check_vs_transformers.py --model 1b --layouts 1x1 --num-prompts 8 --out /tmp/chk_1b
grep -E "RESULT|Error" "$OUT/check_1b.txt" | head -3
rm -rf "$OUT"/*.run
