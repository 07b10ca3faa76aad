#!/usr/bin/env bash
# One GPU (~6 min), session 9: the down projection at decode as one skinny_gemm launch with K split over the SMs,
# its fp32 partial sums added up by the next RMSNorm (SPMD_DOWN_PARTIALS=1, skinny_gemm_partials +
# rms_norm_partials), the SiLU kernel before it (with PDL on, skinny_gemm fetches its first weight tile while SiLU
# runs; cuBLAS and its split-K reduce cannot overlap).
# Session 9's first call (with SiLU formed inside the loop, SPMD_DOWN_SILU_IN_KERNEL=1) measured Llama-3-8B bs1 @1k
# at 5.7-8.6 ms over five tile / split choices against 4.5 ms off; without the SiLU kernel at all (an upper bound,
# wrong outputs) 4.4 ms; without both RMSNorms no change (PDL hides them between Triton kernels).
# - the bf16 kernel tests of the two kernels;
# - Llama-3-8B decode bs1 / bs16 @1k: off, the default tiles and a tile / split sweep;
# - the 1.1B Llama vs transformers at 1x1 with the path on (every layer's MLP through it).
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part kernels 150 python3 -m pytest -q -n 8 tests/kernels/test_skinny_gemm.py tests/kernels/test_rmsnorm.py
tail -1 "$OUT/kernels.txt"; grep -E "^FAILED|^E " "$OUT/kernels.txt" | head -6
bench() { local name=$1; shift
  part $name 80 env "$@" python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
    'bench.batch_sizes=[1,16]' bench.context=1024 bench.repeats=2 bench.output=$OUT/$name.json
  echo "$name $*"; grep -E "runs:|Error|compiled during" "$OUT/$name.txt" | cut -c1-150; }
bench off SPMD_DOWN_PARTIALS=0
bench default SPMD_DOWN_PARTIALS=1
for cfg in 64,256,4,3,4 128,128,4,4,4 32,256,4,4,2 128,256,8,3,4; do
  bench cfg_${cfg//,/_} SPMD_DOWN_PARTIALS=1 SPMD_DOWN_PARTIALS_CONFIG=$cfg
done
part check_1b 120 env SPMD_DOWN_PARTIALS=1 python3 tests/gpu/check_vs_transformers.py --model 1b --layouts 1x1 \
  --num-prompts 8 --out /tmp/chk_1b
grep -E "RESULT|OUTSIDE|Error" "$OUT/check_1b.txt" | head -3
rm -rf "$OUT"/*.run "$OUT"/*.json "$OUT"/kernels.txt
