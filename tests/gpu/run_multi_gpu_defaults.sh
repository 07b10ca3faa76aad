#!/usr/bin/env bash
# One 4-GPU device call (~8 min): the decode defaults of sessions 7-8 (programmatic dependent launch on every Triton
# kernel, skinny_gemm for 16-64 MB weights, rotary + KV store in the qkv projection's epilogue or in one kernel,
# chunked greedy argmax) were checked against transformers at 1x1 only. Here with tensor-parallel all-reduces and
# the DP exchange around them, in CUDA graphs: the 1.1B Llama at 1x4 and 2x2 with every weight through skinny_gemm
# (SPMD_SKINNY_MIN_MB=0, so the sharded qkv takes the rotary epilogue), Qwen3 at 2x2, DeepSeek-V2-Lite at 2x2 and
# 4x1 with DP attention. Meanwhile the whole kernel suite in bf16 runs beside them (16 pytest-xdist workers, 64 CPU
# cores to compile with), so that every kernel is checked on the card with PDL on.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
( part kernel_suite 480 python3 -m pytest -q -n 16 tests/kernels tests/test_mla_triton_path.py > /dev/null ) &
suite=$!
check() { local name=$1 limit=$2; shift 2
  part $name $limit "$@" --num-prompts 8 --out /tmp/chk_$name
  grep -E "RESULT|OUTSIDE|Error" "$OUT/$name.txt" | head -4; }
check llama1b_tp 150 env SPMD_SKINNY_MIN_MB=0 python3 tests/gpu/check_vs_transformers.py --model 1b --layouts 1x4 2x2
check qwen3_2x2 120 python3 tests/gpu/check_vs_transformers.py --model qwen3 --layouts 2x2
check dsv2lite_dpattn 200 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 2x2 4x1 \
  --extra parallel.dp_attention=true model.max_model_len=4096
wait $suite
echo "=== kernel_suite"; tail -3 "$OUT/kernel_suite.txt"; grep -E "^FAILED|^ERROR" "$OUT/kernel_suite.txt" | head -20
rm -rf "$OUT"/*.run
