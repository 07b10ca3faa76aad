#!/usr/bin/env bash
# One 4-GPU device call (~5 min) after session 3's last engine changes (16-byte-aligned batch uploads, the
# tuned decode-attention defaults, pinned buffers for the DP exchange): tiny
# dp2 x tp2 vs transformers; then side by side the bf16 decode/MLA/compiled-variant kernel tests, Qwen3-0.6B
# nano-vllm (no kernel should compile inside the timed case) and Llama-3-8B decode; then Qwen3-8B nano-vllm dp4.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
rows() { grep -A8 "^case " "$OUT/$1.txt" | grep -v "^results"; grep -h "compiled during\|Error" "$OUT/$1.txt" | tail -2; }
part tiny_2x2 120 python3 tests/gpu/check_vs_transformers.py --model tiny --layouts 2x2 --out /tmp/chk
grep -E "RESULT|Error" "$OUT/tiny_2x2.txt" | head -3
( export CUDA_VISIBLE_DEVICES=1; part kernels 100 python3 -m pytest -q tests/kernels/test_jit_variants.py \
    tests/kernels/test_decode_attention.py tests/kernels/test_mla_decode.py ) &
( export CUDA_VISIBLE_DEVICES=0; part qwen_nano 90 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b \
    bench.workload=nano_vllm bench.output=$OUT/qwen_nano.json ) &
( export CUDA_VISIBLE_DEVICES=2; part llama_decode 90 python3 -m spmd_infer.bench bench.preset=llama-3-8b \
    bench.workload=decode 'bench.batch_sizes=[64,1]' bench.context=1024 bench.output=$OUT/llama_decode.json ) &
wait
echo "--- kernels"; tail -2 "$OUT/kernels.txt"; grep -E "^FAILED" "$OUT/kernels.txt" | head
for name in qwen_nano llama_decode; do echo "--- $name"; rows $name; done
part qwen8_dp4 90 torchrun --nproc-per-node 4 -m spmd_infer.bench bench.preset=qwen3-8b bench.workload=nano_vllm \
  parallel.dp=4 bench.output=$OUT/qwen8_dp4.json
rows qwen8_dp4
