#!/usr/bin/env bash
# One 1-GPU device call (~7 min), session 36: DeepSeek's q_proj (or q_a_proj) and kv_a_proj_with_mqa held as one
# weight (DeepseekV2Attention.q_kv_a_proj: one GEMM launch a layer instead of two). The DeepSeek and float8-linear
# tests on the card, DeepSeek-V2-Lite against transformers (bf16, then from a block-float8 copy), then decode @1k
# merged against separate (separate_mla_down_projections.patch puts the two layers back), interleaved twice, in
# bf16 at bs1 / bs8 / bs16 / bs64 and with float8 linear layers at bs1 / bs16. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 200 tests/test_deepseek.py tests/test_mla_triton_path.py tests/test_fp8_linears.py
check_part 150 --model dsv2lite --layouts 1x1 --out /tmp/chk_merged
mv "$OUT/check.txt" "$OUT/check_bf16.txt"
check_part 150 --model dsv2lite --layouts 1x1 --block-fp8 --out /tmp/chk_merged_fp8
separate=$(patched_kernels separate tests/gpu/separate_mla_down_projections.patch)
for run in merged1 separate1 merged2 separate2; do
  pp=$PYTHONPATH; [[ $run == separate* ]] && pp=$separate
  BATCHES=1,8,16,64 LIMIT=120 decode_part "$run" deepseek-v2-lite PYTHONPATH="$pp" -- bench.repeats=2
done
for run in merged separate; do
  pp=$PYTHONPATH; [[ $run == separate ]] && pp=$separate
  BATCHES=1,16 LIMIT=120 decode_part "fp8_$run" deepseek-v2-lite PYTHONPATH="$pp" -- model.linear_dtype=fp8
done
rm -rf "$OUT"/*.json "$OUT"/*.run
