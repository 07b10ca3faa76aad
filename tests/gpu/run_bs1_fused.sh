#!/usr/bin/env bash
# One GPU (~5 min), session 8: what the qkv projection's kernel absorbs at Llama-3-8B decode, bs16/bs1 @1k twice
# each, after the bf16 tests of skinny_gemm and qkv_rope_store and the 1.1B Llama and Qwen3 against transformers
# with every weight through skinny_gemm. Measured on an H200 (the same calls): rotary + KV store in the epilogue
# (now the default) bs1 4.5 ms, 81.7-83.4% MBU, against 4.7 ms, 78.3-78.7% with rotary_store_kv (SPMD_QKV_ROPE=0);
# bs16 5.4 ms either way. 64-token decode splits 78.5-79.4%: noise, not taken. The residual add and input RMSNorm
# in the projection's prologue cost 4.7 -> 5.5 ms (a separate rms pass ahead of the weight stream) or 7.2 ms (the
# squares summed inside the K loop, which Triton no longer pipelines), and were removed.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part kernel_tests 100 python3 -m pytest -q -x tests/kernels/test_skinny_gemm.py tests/kernels/test_qkv_rope_store.py
tail -1 "$OUT/kernel_tests.txt"; grep -E "^FAILED|^E " "$OUT/kernel_tests.txt" | head -6
for model in 1b qwen3; do
  part check_$model 80 env SPMD_SKINNY_MIN_MB=0 \
    python3 tests/gpu/check_vs_transformers.py --model $model --layouts 1x1 --num-prompts 8 --out /tmp/chk_$model
  grep -E "RESULT|Error" "$OUT/check_$model.txt" | head -3
done
bench() { local name=$1; shift
  part $name 50 env "$@" python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
    'bench.batch_sizes=[16,1]' bench.context=1024 bench.output=$OUT/$name.json
  grep -A2 "^case " "$OUT/$name.txt" | tail -2 | cut -c1-100; grep -h "Error" "$OUT/$name.txt" | tail -2; }
for round in 1 2; do
  bench rope_$round
  bench separate_$round SPMD_QKV_ROPE=0
  bench split64_$round SPMD_DECODE_MIN_SPLIT_TOKENS=64 SPMD_DECODE_CONFIG=64,4,3
done
rm -rf "$OUT"/*.run "$OUT"/*.json
