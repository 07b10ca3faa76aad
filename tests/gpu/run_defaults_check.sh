#!/usr/bin/env bash
# One GPU (~6 min): the decode defaults of session 7 (programmatic dependent launch, skinny_gemm for 16-64 MB
# weights, rotary + KV store in one kernel) against the previous ones (SPMD_PDL=0 SPMD_SKINNY_GEMM=0
# SPMD_ROTARY_STORE_KV=0): Llama-3-8B decode bs64/bs1 @1k, old/new/old/new; Qwen3-0.6B nano-vllm; the 1.1B Llama,
# Qwen3 and DeepSeek-V2-Lite against transformers with the new defaults; skinny_gemm and PDL kernel tests in bf16.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
rows() { grep -A3 "^case " "$OUT/$1.txt" | grep -v "^results"; grep -h "Error" "$OUT/$1.txt" | tail -2; }
old=(env SPMD_PDL=0 SPMD_SKINNY_GEMM=0 SPMD_ROTARY_STORE_KV=0)
llama=(python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode 'bench.batch_sizes=[64,1]'
  bench.context=1024)
for round in 1 2; do
  part llama_old_$round 80 "${old[@]}" "${llama[@]}" bench.output=$OUT/llama_old_$round.json; rows llama_old_$round
  part llama_new_$round 80 "${llama[@]}" bench.output=$OUT/llama_new_$round.json; rows llama_new_$round
done
part nano_new 70 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=nano_vllm \
  bench.output=$OUT/nano_new.json
rows nano_new
part kernel_tests 60 python3 -m pytest -q -x tests/kernels/test_skinny_gemm.py tests/kernels/test_pdl.py
tail -1 "$OUT/kernel_tests.txt"; grep -E "^FAILED|^E " "$OUT/kernel_tests.txt" | head -6
for model in 1b qwen3 dsv2lite; do
  part check_$model 80 python3 tests/gpu/check_vs_transformers.py --model $model --layouts 1x1 --num-prompts 8 \
    --out /tmp/chk_$model
  grep -E "RESULT|Error" "$OUT/check_$model.txt" | head -3
done
rm -rf "$OUT"/*.run
