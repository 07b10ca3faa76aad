#!/usr/bin/env bash
# One GPU (~4 min): Llama-3-8B bs1 @1k decode with the current defaults (greedy steps through greedy_argmax) twice,
# around skinny_gemm taking down_proj too (SPMD_SKINNY_MAX_MB=128); the sampling kernels' tests in bf16; the 1.1B
# Llama against transformers (greedy) on the current path.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
bs1() { local name=$1; shift
  part $name 70 env "$@" python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
    'bench.batch_sizes=[1]' bench.context=1024 bench.output=$OUT/$name.json
  grep -A1 "^case " "$OUT/$name.txt" | tail -1; grep -h "Error" "$OUT/$name.txt" | tail -2; }
bs1 current_1
bs1 skinny_max128 SPMD_SKINNY_MAX_MB=128
bs1 current_2
part kernel_tests 60 python3 -m pytest -q -x tests/kernels/test_sampling.py tests/test_sampler_dtypes.py
tail -1 "$OUT/kernel_tests.txt"; grep -E "^FAILED|^E " "$OUT/kernel_tests.txt" | head -6
part check_1b 80 python3 tests/gpu/check_vs_transformers.py --model 1b --layouts 1x1 --num-prompts 8 --out /tmp/chk_1b
grep -E "RESULT|Error" "$OUT/check_1b.txt" | head -3
rm -rf "$OUT"/*.run
