#!/usr/bin/env bash
# One 1-GPU device call (~5 min), for session 14: DeepSeek's MLA latent cache in float8 (cache.dtype=fp8, built in
# session 13: CPU-tested, the decode kernel compiled for sm_90 offline by ptx_census.py mla --cache fp8, whose PTX
# shows V's byte-wise gather again and 255 registers with a 12-byte spill). The float8 / MLA / store kernel tests in
# bf16, DeepSeek-V2-Lite (4 layers) against transformers with it (float8 drifts: read the top-5 rule's failures as
# drift, not bugs, unless many), then DeepSeek-V2-Lite decode at bs256 / bs64 @1k with a bf16 and a float8 latent
# cache. If float8 is slower per step, try the pinned widening (decode_attention.e4m3_to_f16 with PINNED, q in
# fp16) in mla_decode. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part kernels 150 python3 -m pytest -q -n 8 tests/kernels/test_fp8_kv.py tests/kernels/test_mla_decode.py \
  tests/kernels/test_kv_store.py tests/test_mla_triton_path.py
tail -1 "$OUT/kernels.txt"; grep -E "^FAILED" "$OUT/kernels.txt" | head
part dsv2lite_fp8 150 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 1x1 --out /tmp/chk \
  --extra cache.dtype=fp8
grep -E "RESULT|OUTSIDE|failed|Error" "$OUT/dsv2lite_fp8.txt" | head -8
for kv in auto fp8; do
  part "decode_$kv" 120 python3 -m spmd_infer.bench bench.preset=deepseek-v2-lite bench.workload=decode \
    'bench.batch_sizes=[256,64]' bench.context=1024 cache.dtype=$kv bench.output=$OUT/decode_$kv.json
  echo "--- latent cache $kv"; grep -E "^decode bs|runs:|KV cache|Error" "$OUT/decode_$kv.txt" | cut -c1-160
done
rm -rf "$OUT"/*.run "$OUT"/*.json
