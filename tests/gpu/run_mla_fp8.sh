#!/usr/bin/env bash
# One 1-GPU device call (~9 min), for session 14: DeepSeek's MLA latent cache in float8 (cache.dtype=fp8, built in
# session 13: CPU-tested, the decode kernel compiled for sm_90 offline by ptx_census.py mla --cache fp8, whose PTX
# shows no byte-wise gather with c_kv pinned where widened, SPMD_MLA_FP8_PIN=1, the default). The float8 / MLA /
# store kernel tests in bf16, DeepSeek-V2-Lite (4 layers) against transformers with it (float8 drifts: read the
# top-5 rule's failures as drift, not bugs, unless many), then DeepSeek-V2-Lite decode at bs256 / bs64 @1k with a
# bf16 latent cache and a float8 one, pinned and not; then MLA decode's longest-first order (also session 13's,
# untimed) on the nano-vllm workload with and without. Carry [".whl"]. Over 600 s in all: run it as two calls,
# PARTS="kernels check decode" then PARTS=nano (default: all).
set -uo pipefail
want() { [[ ${PARTS:-all} == all || " $PARTS " == *" $1 "* ]]; }
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
if want kernels; then
test_part kernels 150 tests/kernels/test_fp8_kv.py tests/kernels/test_mla_decode.py tests/kernels/test_kv_store.py \
  tests/test_mla_triton_path.py
fi
if want check; then
part dsv2lite_fp8 150 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 1x1 --out /tmp/chk \
  --extra cache.dtype=fp8
grep -E "RESULT|OUTSIDE|failed|Error" "$OUT/dsv2lite_fp8.txt" | head -8
fi
want decode && for run in auto:1 fp8:1 fp8:0; do
  kv=${run%:*} pin=${run#*:}
  part "decode_${kv}_pin$pin" 120 env SPMD_MLA_FP8_PIN=$pin python3 -m spmd_infer.bench bench.preset=deepseek-v2-lite \
    bench.workload=decode 'bench.batch_sizes=[256,64]' bench.context=1024 cache.dtype=$kv \
    bench.output=$OUT/decode_${kv}_pin$pin.json
  echo "--- latent cache $kv, pinned $pin"; grep -E "^decode bs|runs:|KV cache|Error" "$OUT/decode_${kv}_pin$pin.txt" | cut -c1-160
done
# MLA decode's longest-first program order (session 13, untimed): the nano-vllm workload's varied contexts.
want nano && for lf in 1 0; do
  part "nano_dsv2lite_lf$lf" 180 env SPMD_DECODE_LONGEST_FIRST=$lf python3 -m spmd_infer.bench \
    bench.preset=deepseek-v2-lite bench.workload=nano_vllm bench.output=$OUT/nano_dsv2lite_lf$lf.json
  echo "--- DeepSeek-V2-Lite nano-vllm, longest first $lf"; grep -E "^nano_vllm|Error" "$OUT/nano_dsv2lite_lf$lf.txt" | cut -c1-150
done
rm -rf "$OUT"/*.run "$OUT"/*.json
