#!/usr/bin/env bash
# One GPU (~6 min): decode attention over a float8 cache loading V by head dimension (SPMD_FP8_V_BY_DIM=1,
# kernels/decode_attention.py). Session 9's profile (run_nano_profile.sh) had the split kernel at 3.57 ms a step
# over float8 against 4.08 ms over bf16 for half the bytes (2.0 TB/s), and tests/gpu/ptx_census.py showed 128
# byte-wide shared loads per thread per tile, the float8 V tile transposed a byte at a time; by head dimension they
# become 64-bit loads and register permutes (V then loads straight into registers, not through cp.async).
# - the float8 kernel tests in bf16 with both loads (the v_by_dim fixture);
# - the decode tile sweep over a float8 cache with it on (tune_decode_attention.py --fp8);
# - Qwen3-0.6B nano-vllm with the fp8 cache, off and on, and with the bf16 cache beside them.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part kernels 90 python3 -m pytest -q -n 8 tests/kernels/test_fp8_kv.py
tail -1 "$OUT/kernels.txt"; grep -E "^FAILED|^E " "$OUT/kernels.txt" | head -4
part tune 150 env SPMD_FP8_V_BY_DIM=1 python3 tests/gpu/tune_decode_attention.py --fp8
grep -v "^  .* failed:" "$OUT/tune.txt" | tail -20
for run in "fp8 0" "fp8 1" "auto 0"; do
  set -- $run
  part nano_$1_$2 100 env SPMD_FP8_V_BY_DIM=$2 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b \
    bench.workload=nano_vllm cache.dtype=$1 bench.output=$OUT/nano.json
  echo "cache $1, V by dim $2"; grep -E "^nano_vllm|Error|compiled during" "$OUT/nano_$1_$2.txt" | cut -c1-150
done
rm -rf "$OUT"/*.run "$OUT"/*.json "$OUT"/kernels.txt
