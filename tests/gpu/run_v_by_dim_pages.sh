#!/usr/bin/env bash
# One 1-GPU device call (~8 min), for session 13: decode attention over V laid out by head dimension read a page at
# a time (the tile as [pages, D, page], masked by whole pages, so the loads stay 16-byte vectors: ptx_census.py
# --v-by-dim 1 shows no byte-wide shared loads left for the (64, 2, 6) and (32, 1, 6) tiles; run_v_by_dim.sh's
# first try masked by token and compiled to byte loads from global memory, 229 -> 351 us). The kernel tests in bf16
# (V by dimension included), token-major against V by dimension at the engine's tiles, then a float8 tile sweep
# over V by dimension; then the engine with cache.v_by_dim=true (store kernels and prefill attention read it too):
# Qwen3 against transformers (bf16) and nano-vllm fp8 / bf16 with and without it. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
part kernels 150 python3 -m pytest -q -n 8 tests/kernels/test_decode_attention.py tests/kernels/test_fp8_kv.py \
  tests/kernels/test_prefill_attention.py tests/kernels/test_kv_store.py tests/kernels/test_rotary_store_kv.py
tail -1 "$OUT/kernels.txt"; grep -E "^FAILED" "$OUT/kernels.txt" | head
part layouts 150 env TUNE_LAYOUTS="token-major,V by dim" TUNE_ORDERS=0 python3 tests/gpu/tune_decode_attention.py \
  --layouts --pages "16 32"
grep -vE "^\s*$" "$OUT/layouts.txt" | cut -c1-150
for widen in wide all; do
  part "tiles_$widen" 200 env TUNE_V_BY_DIM=1 SPMD_DECODE_FP8_ASM_WIDEN=$widen python3 tests/gpu/tune_decode_attention.py \
    --fp8 --configs "64,2,6 32,1,6 64,4,4 128,4,3 64,2,4 32,1,4 128,8,3 64,4,3"
  echo "--- float8 tiles over V by dimension, widen $widen"; grep -vE "^\s*$" "$OUT/tiles_$widen.txt" | cut -c1-150 | tail -45
done
part qwen3_vdim 90 python3 tests/gpu/check_vs_transformers.py --model qwen3 --layouts 1x1 --out /tmp/chk \
  --extra cache.v_by_dim=true
grep -E "RESULT|OUTSIDE|failed|Error" "$OUT/qwen3_vdim.txt" | head -5
nano_part nano_fp8 -- cache.dtype=fp8
nano_part nano_fp8_vdim -- cache.dtype=fp8 cache.v_by_dim=true
nano_part nano_fp8_vdim_narrow SPMD_DECODE_FP8_CONFIGS="64,2,6 32,1,6" -- cache.dtype=fp8 cache.v_by_dim=true
nano_part nano_bf16_vdim -- cache.v_by_dim=true
nano_part nano_fp8_vdim2 -- cache.dtype=fp8 cache.v_by_dim=true
rm -rf "$OUT"/*.run "$OUT"/*.json
