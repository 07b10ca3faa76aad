#!/usr/bin/env bash
# One 1-GPU device call (~7 min), session 13's last: the whole kernel suite in bf16 under the new float8 defaults
# (V pinned, (64, 2, 6) for one split), nano-vllm fp8 and bf16 with the defaults, and the issue-4 decode figures
# (Llama-3-8B bs64 / bs1 @1k, three runs in one launch) in bf16 and over a float8 cache. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part kernel_suite 240 python3 -m pytest -q -n 12 tests/kernels tests/test_mla_triton_path.py
tail -1 "$OUT/kernel_suite.txt"; grep -E "^FAILED|^ERROR" "$OUT/kernel_suite.txt" | head -20
nano_part nano_fp8 -- cache.dtype=fp8
nano_part nano_bf16
for kv in auto fp8; do
  part "decode_$kv" 90 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
    'bench.batch_sizes=[64,1]' bench.context=1024 bench.repeats=3 cache.dtype=$kv bench.output=$OUT/decode_$kv.json
  echo "--- cache $kv"; grep -E "^decode bs|runs:" "$OUT/decode_$kv.txt" | cut -c1-140
done
rm -rf "$OUT"/*.run "$OUT"/*.json
