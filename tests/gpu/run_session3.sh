#!/usr/bin/env bash
# One 4-GPU device call (<= 10 min). One GPU each, side by side: Qwen3-0.6B nano-vllm against transformers
# generate at batch 64 in the same run (issue 4's protocol); the bf16 kernel suite (with the compiled-variant tests); the decode-attention config sweep;
# DeepSeek 1x1 vs transformers and Llama-3-8B decode after the kernel-specialisation change. Then on all four:
# DeepSeek-V2-Lite-shaped dp2 x tp2 DP attention vs transformers with overlapped steps (now the default).
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
rows() { grep -A14 "^case " "$OUT/$1.txt" | grep -v "^results"; grep -h "compiled during\|transformers:" "$OUT/$1.txt" | tail -3; }
( export CUDA_VISIBLE_DEVICES=0; part qwen_nano_hf 470 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=nano_vllm \
    bench.baseline=hf bench.hf_batch_size=64 bench.output=$OUT/qwen_nano_hf.json ) &
( export CUDA_VISIBLE_DEVICES=1; part kernels 400 python3 -m pytest -q tests/kernels tests/test_mla_triton_path.py ) &
( export CUDA_VISIBLE_DEVICES=2; part tune_decode 300 python3 tests/gpu/tune_decode_attention.py
  part qwen_nano_profile 100 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=nano_vllm \
    bench.profile=true bench.profile_top=10 bench.output=$OUT/qwen_nano_profile.json ) &
( export CUDA_VISIBLE_DEVICES=3; part dsv2_1x1 120 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 1x1 --num-prompts 8 \
    --out /tmp/chk3 --extra model.max_model_len=4096
  part llama_decode 100 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
    'bench.batch_sizes=[64,1]' bench.context=1024 bench.output=$OUT/llama_decode.json ) &
wait
part dsv2_dpattn 100 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 2x2 --num-prompts 8 \
  --out /tmp/chk --extra parallel.dp_attention=true model.max_model_len=4096
grep -E "RESULT|OUTSIDE|Error" "$OUT/dsv2_dpattn.txt" | head
grep -E "RESULT|OUTSIDE|Error" "$OUT/dsv2_1x1.txt" | head
for name in llama_decode qwen_nano_profile qwen_nano_hf; do echo "--- $name"; rows $name; done
echo "--- kernels"; tail -3 "$OUT/kernels.txt"; grep -E "^FAILED" "$OUT/kernels.txt" | head
echo "--- tune_decode"; cat "$OUT/tune_decode.txt" | tail -60
