#!/usr/bin/env bash
# One 1-GPU device call (~5 min), for session 39: is the float8 decode kernel (~70% of the copy rate at nano-vllm
# bs256 with V dealt by warp, as is the Gluon experiment) bound by how the cache is read? Over token-major pages a
# program reads 128-byte rows 1 KB apart, and the grid launches one KV head of every sequence before the next head
# (blockIdx.x is the sequence), so the 8 rows that share a DRAM page are read far apart in time. Timed: the kernel
# alone with a sequence's KV heads side by side in launch order (decode_heads_first.patch) against the tree;
# head-major pages against token-major (tune_decode_attention.py --layouts, bf16 and float8, and run_gluon_decode.sh
# for the Gluon kernel). End to end: run_fp8_access_e2e.sh. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
first=$(patched_kernels heads_first tests/gpu/decode_heads_first.patch)
for run in tree heads_first; do
  pp=$PYTHONPATH; [[ $run == heads_first ]] && pp=$first
  part "tiles_$run" 100 env PYTHONPATH="$pp" python3 tests/gpu/tune_decode_attention.py --fp8 --configs "64,2,6"
  echo "--- $run"; grep -vE "^\s*$|warn" "$OUT/tiles_$run.txt" | tail -22 | cut -c1-110
done
part layouts 150 env TUNE_ORDERS=0 python3 tests/gpu/tune_decode_attention.py --layouts --pages 16
grep -vE "^\s*$|warn" "$OUT/layouts.txt" | cut -c1-120
STAGES=3 bash tests/gpu/run_gluon_decode.sh
rm -rf "$OUT"/*.run "$OUT"/*.json
