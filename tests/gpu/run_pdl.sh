#!/usr/bin/env bash
# One GPU (~11 min): three launch savings, each off by default until this has run: programmatic dependent launch on
# every Triton kernel (SPMD_PDL=1), the split-KV combine inside the decode split kernel (SPMD_DECODE_FUSED_REDUCE=1)
# and the rotary embedding fused with the KV-cache store (SPMD_ROTARY_STORE_KV=1, Llama and Qwen2 attention).
# Kernel tests in bf16 with all on; the 1.1B Llama, Qwen3 and DeepSeek-V2-Lite (MLA + MoE kernels) against
# transformers with all on (CUDA graphs); then Llama-3-8B decode bs64/bs1 @1k with none, PDL, PDL + fused combine,
# all three, and the Qwen3-0.6B nano-vllm protocol with PDL off and on. Where outputs agree and steps are faster,
# flip the defaults: PDL_ON (kernels/pdl.py), FUSED_REDUCE (kernels/decode_attention.py), FUSE_ROTARY_STORE
# (spmd_infer/models/llama.py).
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
rows() { grep -A4 "^case " "$OUT/$1.txt" | grep -v "^results"; grep -h "Error" "$OUT/$1.txt" | tail -2; }
export SPMD_PDL=1 SPMD_DECODE_FUSED_REDUCE=1 SPMD_ROTARY_STORE_KV=1
part kernel_tests 220 python3 -m pytest -q -x tests/kernels -k "not prefill"
tail -2 "$OUT/kernel_tests.txt"; grep -E "^FAILED|^E " "$OUT/kernel_tests.txt" | head -6
for model in 1b qwen3 dsv2lite; do
  part check_$model 100 python3 tests/gpu/check_vs_transformers.py --model $model --layouts 1x1 --num-prompts 8 \
    --out /tmp/chk_$model
  grep -E "RESULT|Error" "$OUT/check_$model.txt" | head -3
done
for variant in "0 0 0" "1 0 0" "1 1 0" "1 1 1"; do
  read -r pdl fused rotary <<< "$variant"
  export SPMD_PDL=$pdl SPMD_DECODE_FUSED_REDUCE=$fused SPMD_ROTARY_STORE_KV=$rotary
  name=llama_pdl${pdl}_fused${fused}_rotary$rotary
  part $name 90 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
    'bench.batch_sizes=[64,1]' bench.context=1024 bench.output=$OUT/$name.json
  rows $name
done
export SPMD_DECODE_FUSED_REDUCE=0 SPMD_ROTARY_STORE_KV=0
for pdl in 0 1; do
  export SPMD_PDL=$pdl
  part nano_pdl$pdl 70 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=nano_vllm \
    bench.output=$OUT/nano_pdl$pdl.json
  rows nano_pdl$pdl
done
rm -rf "$OUT"/*.run
