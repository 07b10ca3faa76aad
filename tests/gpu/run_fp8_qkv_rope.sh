#!/usr/bin/env bash
# One 1-GPU device call (~5 min), for session 20: SPMD_FP8_QKV_ROPE (built in session 19 after its device time,
# off): a float8 qkv projection at decode rotates q and k and stores k and v in fp8_linear's epilogue
# (fp8_qkv_rope_store), one launch a layer fewer, as the bf16 path does through skinny_gemm (Llama-3-8B bf16 bs1
# 4.7 -> 4.5 ms there). Its kernel tests on the GPU; the 1.1B Llama from its float8 copy against transformers with it
# on and off (the same rule; Qwen3 positions q and k after its norms and never takes it); Llama-3-8B decode @1k
# bs64 / bs16 / bs1 with float8 linear layers, on / off (session 19 off: 6.2-6.3 / 4.0-4.1 / 3.0 ms). Turn it on if
# the check holds and no batch is slower. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 150 tests/kernels/test_qkv_rope_store.py tests/kernels/test_fp8_linear.py tests/kernels/test_pdl.py
for on in 1 0; do
  part "check_$on" 150 env SPMD_FP8_QKV_ROPE=$on python3 tests/gpu/check_vs_transformers.py --model 1b \
    --layouts 1x1 --num-prompts 8 --out "/tmp/chk_rope_$on" --block-fp8
  echo "--- SPMD_FP8_QKV_ROPE=$on"; grep -E "RESULT|OUTSIDE|Error" "$OUT/check_$on.txt" | head -4
done
switch_parts decode SPMD_FP8_QKV_ROPE 80 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
  'bench.batch_sizes=[64,16,1]' bench.context=1024 model.linear_dtype=fp8 bench.output=$OUT/decode.json
rm -rf "$OUT"/*.json "$OUT"/*.run
