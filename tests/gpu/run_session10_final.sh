#!/usr/bin/env bash
# One GPU (~4 min), session 10's closing check after removing Qwen3's norm path from skinny_gemm's qkv epilogue
# (the kernel's signature changed) and the longest-first order: the skinny_gemm / qkv epilogue / decode attention
# tests in bf16; the 1.1B Llama (qkv epilogue on) and Qwen3 vs transformers; Llama-3-8B decode bs1 / bs64 @1k.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part kernels 120 python3 -m pytest -q -n 8 tests/kernels/test_skinny_gemm.py tests/kernels/test_qkv_rope_store.py \
  tests/kernels/test_decode_attention.py tests/kernels/test_qk_norm_rotary.py
tail -1 "$OUT/kernels.txt"; grep -E "^FAILED|^E " "$OUT/kernels.txt" | head -4
for model in 1b qwen3; do
  part check_$model 120 python3 tests/gpu/check_vs_transformers.py --model $model --layouts 1x1 --num-prompts 8 \
    --out /tmp/chk_$model
  grep -E "RESULT|OUTSIDE|Error" "$OUT/check_$model.txt" | head -3
done
part decode 90 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
  'bench.batch_sizes=[64,1]' bench.context=1024 bench.repeats=2 bench.output=$OUT/decode.json
grep -E "runs:|Error" "$OUT/decode.txt" | cut -c1-140
rm -rf "$OUT"/*.run "$OUT"/*.json "$OUT"/kernels.txt
