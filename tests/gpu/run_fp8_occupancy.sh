#!/usr/bin/env bash
# One GPU (~6 min), next after session 10: decode attention over a float8 cache still runs at ~59% of the copy rate
# with five stages (nano-vllm bs256, 241 us a layer; a bf16 cache reaches 93% at 301 us). Five stages beat three,
# six tied, seven and eight lost (run_fp8_stages.sh): more bytes in flight helped until shared memory cut the
# programs an SM. tests/gpu/ptx_census.py (registers from ptxas -v) says why the float8 kernel is short of programs:
# it widens whole K and V tiles into registers, 199-201 a thread at BLOCK_N 128 with 4 warps, so two programs an SM
# (a bf16 cache: 134, three; (256, 8, 3) over float8: one, why 256-token tiles lost). Predicted programs an SM:
# (128,4,5) 2 | (64,4,6) 3 | (64,4,8) 3 | (64,2,6) 4 | (128,2,5) 3, but 208 bytes spilled | (32,4,8) 4 | (32,2,8) 6.
# Session 10 had (64,4,3) slower than (128,4,3) despite 3 programs against 2, so occupancy is not all of it. Times
# these against the (128, 4, 5) default, then the same tiles with registers capped at 168 (SPMD_DECODE_FP8_MAXNREG:
# three programs an SM at BLOCK_N 128, nothing or 16 bytes spilled), then nano-vllm fp8 without and with the cap.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part tiles 200 python3 tests/gpu/tune_decode_attention.py --fp8 \
  --configs "128,4,5 64,4,6 64,4,8 64,2,6 128,2,5 32,4,8 32,2,8"
grep -v " failed:" "$OUT/tiles.txt" | tail -45
part capped 120 env SPMD_DECODE_FP8_MAXNREG=168 python3 tests/gpu/tune_decode_attention.py --fp8 \
  --configs "128,4,3 128,4,5 128,4,6 64,4,6"
grep -v " failed:" "$OUT/capped.txt" | tail -8
for cap in 0 168; do
  nano_part nano_cap$cap SPMD_DECODE_FP8_MAXNREG=$cap -- cache.dtype=fp8
done
rm -rf "$OUT"/*.run "$OUT"/*.json
