#!/usr/bin/env bash
# One GPU (~9 min): programmatic dependent launch on every Triton kernel (SPMD_PDL=1, off by default until this has
# run). Kernel tests in bf16 with PDL on; the 1.1B Llama, Qwen3 and DeepSeek-V2-Lite (MLA + MoE kernels) against
# transformers with PDL on (CUDA graphs); then PDL off vs on for Llama-3-8B decode bs64/bs1 @1k and the Qwen3-0.6B
# nano-vllm protocol. If outputs agree and the steps are faster, flip PDL_ON's default in kernels/pdl.py.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
rows() { grep -A4 "^case " "$OUT/$1.txt" | grep -v "^results"; grep -h "Error" "$OUT/$1.txt" | tail -2; }
export SPMD_PDL=1
part kernel_tests 220 python3 -m pytest -q -x tests/kernels -k "not prefill"
tail -2 "$OUT/kernel_tests.txt"; grep -E "^FAILED|^E " "$OUT/kernel_tests.txt" | head -6
for model in 1b qwen3 dsv2lite; do
  part check_$model 100 python3 tests/gpu/check_vs_transformers.py --model $model --layouts 1x1 --num-prompts 8 \
    --out /tmp/chk_$model
  grep -E "RESULT|Error" "$OUT/check_$model.txt" | head -3
done
for pdl in 0 1; do
  export SPMD_PDL=$pdl
  part llama_pdl$pdl 90 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
    'bench.batch_sizes=[64,1]' bench.context=1024 bench.output=$OUT/llama_pdl$pdl.json
  rows llama_pdl$pdl
  part nano_pdl$pdl 70 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=nano_vllm \
    bench.output=$OUT/nano_pdl$pdl.json
  rows nano_pdl$pdl
done
rm -rf "$OUT"/*.run
