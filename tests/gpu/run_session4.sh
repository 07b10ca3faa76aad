#!/usr/bin/env bash
# One 4-GPU device call (~8 min) for session 3's unverified changes. Side by side on one GPU each: bf16 tests of
# the fused Qwen3 q/k-norm + rotary kernel, of sampling from bf16 logits and of the fp8 KV cache; Qwen3 vs
# transformers at 1x1 (fused kernel, bf16 logits end to end), then with cache.dtype=fp8 (top-5 rule); Qwen3-0.6B
# nano-vllm with the bf16 and the fp8 cache; Llama-3-8B decode. Then on all four: tiny and Qwen3 dp2 x tp2 vs
# transformers (the shared-memory DP exchange), Qwen3-8B nano-vllm dp4 with a decode profile (is the GPU idle
# while ranks wait in lockstep?). Next: run_moe_profile.sh (DeepSeek decode), run_8gpu.sh if 8 GPUs are lent.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
rows() { grep -A12 "^case " "$OUT/$1.txt" | grep -v "^results"; grep -h "compiled during\|Error" "$OUT/$1.txt" | tail -2; }
( export CUDA_VISIBLE_DEVICES=0; part kernels 150 python3 -m pytest -q tests/kernels/test_qk_norm_rotary.py \
    tests/kernels/test_fp8_kv.py tests/kernels/test_sampling.py tests/kernels/test_rmsnorm.py tests/kernels/test_rotary.py tests/test_sampler_dtypes.py ) &
( export CUDA_VISIBLE_DEVICES=1; part qwen3_1x1 150 python3 tests/gpu/check_vs_transformers.py --model qwen3 \
    --layouts 1x1 --num-prompts 8 --out /tmp/chk1
  part qwen3_fp8 150 python3 tests/gpu/check_vs_transformers.py --model qwen3 --layouts 1x1 --num-prompts 8 \
    --out /tmp/chk4 --extra cache.dtype=fp8 ) &
( export CUDA_VISIBLE_DEVICES=2; part qwen_nano 90 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b \
    bench.workload=nano_vllm bench.output=$OUT/qwen_nano.json
  part qwen_nano_fp8 90 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=nano_vllm \
    cache.dtype=fp8 bench.output=$OUT/qwen_nano_fp8.json ) &
( export CUDA_VISIBLE_DEVICES=3; part llama_decode 90 python3 -m spmd_infer.bench bench.preset=llama-3-8b \
    bench.workload=decode 'bench.batch_sizes=[64,1]' bench.context=1024 bench.output=$OUT/llama_decode.json ) &
wait
echo "--- kernels"; tail -2 "$OUT/kernels.txt"; grep -E "^FAILED" "$OUT/kernels.txt" | head
grep -E "RESULT|OUTSIDE|Error" "$OUT/qwen3_1x1.txt" "$OUT/qwen3_fp8.txt" | head -6
for name in qwen_nano qwen_nano_fp8 llama_decode; do echo "--- $name"; rows $name; done
part checks_2x2 150 python3 tests/gpu/check_vs_transformers.py --model tiny --layouts 2x2 --out /tmp/chk2
grep -E "RESULT|OUTSIDE|Error" "$OUT/checks_2x2.txt" | head -3
part qwen3_2x2 150 python3 tests/gpu/check_vs_transformers.py --model qwen3 --layouts 2x2 --num-prompts 8 --out /tmp/chk3
grep -E "RESULT|OUTSIDE|Error" "$OUT/qwen3_2x2.txt" | head -3
part qwen8_dp4 120 torchrun --nproc-per-node 4 -m spmd_infer.bench bench.preset=qwen3-8b bench.workload=nano_vllm \
  parallel.dp=4 bench.profile=true bench.profile_top=8 bench.output=$OUT/qwen8_dp4.json
rows qwen8_dp4
