#!/usr/bin/env bash
# One GPU (~6 min): decode attention over a float8 cache widening K/V by moving bits (SPMD_FP8_BITS=1,
# kernels/fp8_widen.py) instead of cvt. Session 10 (bench_v_layout, code not kept) found float8 decode at ~46% of
# the copy rate in float8 bytes whichever way V was laid out: bound by the widening, not the reads.
# - the widening and float8 kernel tests in bf16 (exact for all 254 e4m3 values; both widenings);
# - the kernel over six decode shapes, cvt vs bits, five tiles (bench_fp8_widen.py);
# - Qwen3-0.6B nano-vllm with the fp8 cache, cvt and bits; and Qwen3 vs transformers with an fp8 cache and bits.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part kernels 90 python3 -m pytest -q -n 8 tests/kernels/test_fp8_widen.py tests/kernels/test_fp8_kv.py
tail -1 "$OUT/kernels.txt"; grep -E "^FAILED|^E " "$OUT/kernels.txt" | head -4
part widen 200 python3 tests/gpu/bench_fp8_widen.py
grep -v " failed:" "$OUT/widen.txt" | tail -50
for bits in 0 1; do
  part nano_fp8_bits$bits 100 env SPMD_FP8_BITS=$bits python3 -m spmd_infer.bench bench.preset=qwen3-0.6b \
    bench.workload=nano_vllm cache.dtype=fp8 bench.output=$OUT/nano.json
  echo "fp8 cache, bits $bits"; grep -E "^nano_vllm|Error|compiled during" "$OUT/nano_fp8_bits$bits.txt" | cut -c1-150
done
rm -rf "$OUT"/*.run "$OUT"/*.json "$OUT"/kernels.txt
