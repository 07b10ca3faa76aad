#!/usr/bin/env bash
# One 1-GPU device call (~8 min): SPMD_SKINNY_SPLIT now on by default with one wave of programs (skinny_split_k,
# retuned from run_skinny_split.sh's sweep). Split model-shape kernel tests; the Qwen3 and DeepSeek-V2-Lite checks
# against transformers with it on (MLA's q, kv_a and o projections are below 16 MB too); Qwen3-0.6B decode @600
# bs1 / bs16 and DeepSeek-V2-Lite decode @1k bs1 / bs16 on / off; nano-vllm on / off twice, interleaved (in
# run_skinny_split.sh on / off differed by 1.6%, within two runs' spread). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 120 tests/kernels/test_skinny_gemm.py tests/test_skinny_split_path.py
for model in qwen3 dsv2lite; do
  part "check_$model" 150 python3 tests/gpu/check_vs_transformers.py --model "$model" --layouts 1x1 --num-prompts 8 \
    --out "/tmp/chk_$model"
  grep -E "RESULT|OUTSIDE|Error" "$OUT/check_$model.txt" | head -4
done
switch_parts qwen SPMD_SKINNY_SPLIT 90 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=decode \
  'bench.batch_sizes=[16,1]' bench.context=600 bench.repeats=2 bench.output=$OUT/qwen.json
switch_parts dsv2 SPMD_SKINNY_SPLIT 120 python3 -m spmd_infer.bench bench.preset=deepseek-v2-lite \
  bench.workload=decode 'bench.batch_sizes=[16,1]' bench.context=1024 bench.repeats=2 bench.output=$OUT/dsv2.json
for pass in 1 2; do
  nano_part "nano_on$pass" SPMD_SKINNY_SPLIT=1
  nano_part "nano_off$pass" SPMD_SKINNY_SPLIT=0
done
rm -rf "$OUT"/*.json "$OUT"/*.run
