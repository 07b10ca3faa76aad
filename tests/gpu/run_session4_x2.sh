#!/usr/bin/env bash
# run_session4.sh for a 2-GPU host (~8 min), when no 4-GPU kind is lent: on one GPU each, bf16 tests of the fused
# Qwen3 q/k-norm + rotary kernel, bf16-logit sampling and the fp8 KV cache, then Qwen3 vs transformers at 1x1
# (bf16 and fp8 cache); Qwen3-0.6B nano-vllm (bf16 and fp8 cache) and Llama-3-8B decode with a bs1 profile (where
# the non-GEMV time goes). Then on both: tiny and Qwen3 dp2 vs transformers through the shared-memory DP exchange,
# Qwen3-8B nano-vllm dp2 with a decode profile (exchange share of the step).
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
rows() { grep -A12 "^case " "$OUT/$1.txt" | grep -v "^results"; grep -h "compiled during\|Error" "$OUT/$1.txt" | tail -2; }
( export CUDA_VISIBLE_DEVICES=0; part kernels 150 python3 -m pytest -q tests/kernels/test_qk_norm_rotary.py \
    tests/kernels/test_fp8_kv.py tests/kernels/test_sampling.py tests/kernels/test_rmsnorm.py tests/kernels/test_rotary.py
  # A separate run: with a top-level test file among them, the device's pytest lost tests/kernels' fixtures.
  part sampler_dtypes 60 python3 -m pytest -q tests/test_sampler_dtypes.py
  part qwen3_1x1 120 python3 tests/gpu/check_vs_transformers.py --model qwen3 \
    --layouts 1x1 --num-prompts 8 --out /tmp/chk1
  part qwen3_fp8 120 python3 tests/gpu/check_vs_transformers.py --model qwen3 --layouts 1x1 --num-prompts 8 \
    --out /tmp/chk4 --extra cache.dtype=fp8 ) &
( export CUDA_VISIBLE_DEVICES=1; part qwen_nano 90 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b \
    bench.workload=nano_vllm bench.output=$OUT/qwen_nano.json
  part qwen_nano_fp8 90 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=nano_vllm \
    cache.dtype=fp8 bench.output=$OUT/qwen_nano_fp8.json
  part llama_decode 120 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
    'bench.batch_sizes=[64,1]' bench.context=1024 bench.profile=true bench.profile_top=24 \
    bench.output=$OUT/llama_decode.json ) &
wait
echo "--- kernels"; tail -1 "$OUT/kernels.txt" "$OUT/sampler_dtypes.txt"; grep -hE "^FAILED" "$OUT"/kernels.txt | head
grep -E "RESULT|OUTSIDE|Error" "$OUT/qwen3_1x1.txt" "$OUT/qwen3_fp8.txt" | head -6
for name in qwen_nano qwen_nano_fp8 llama_decode; do echo "--- $name"; rows $name; done
grep -A26 "^profile of" "$OUT/llama_decode.txt" | head -27
part checks_dp2 120 python3 tests/gpu/check_vs_transformers.py --model tiny --layouts 2x1 --out /tmp/chk2
grep -E "RESULT|OUTSIDE|Error|exchange" "$OUT/checks_dp2.txt" | head -4
part qwen3_dp2 120 python3 tests/gpu/check_vs_transformers.py --model qwen3 --layouts 2x1 --num-prompts 8 --out /tmp/chk3
grep -E "RESULT|OUTSIDE|Error" "$OUT/qwen3_dp2.txt" | head -3
part qwen8_dp2 120 torchrun --nproc-per-node 2 -m spmd_infer.bench bench.preset=qwen3-8b bench.workload=nano_vllm \
  parallel.dp=2 bench.profile=true bench.profile_top=8 bench.output=$OUT/qwen8_dp2.json
rows qwen8_dp2; grep -A10 "^profile of" "$OUT/qwen8_dp2.txt" | head -11
rm -rf "$OUT"/*.run  # run dirs: too many files for the device tool to bring back
