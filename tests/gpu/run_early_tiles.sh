#!/usr/bin/env bash
# One GPU (~3 min), session 9: skinny_gemm loading 1 (the default), 2 or 3 weight tiles before its PDL wait
# (SPMD_SKINNY_EARLY_TILES), so that more of qkv's and o's weight stream is in flight while the kernel before drains;
# the bf16 skinny_gemm / qkv epilogue tests with 3, then Llama-3-8B bs1 @1k decode with each.
# Measured (H200): 259 tests passed; bs1 4.5 ms, 80.4 / 80.8% MBU with 1; 4.6 ms, 79.8 / 80.6% with 2; 4.6 ms,
# 80.8 / 81.1% with 3: no gain, so the variable and the extra peeled tiles were removed again (this script needs
# them back to rerun: commit e3c7095).
set -uo pipefail
source tests/gpu/device_env.sh
part kernels 60 env SPMD_SKINNY_EARLY_TILES=3 python3 -m pytest -q -n 8 tests/kernels/test_skinny_gemm.py \
  tests/kernels/test_qkv_rope_store.py
tail -1 "$OUT/kernels.txt"; grep -E "^FAILED|^E " "$OUT/kernels.txt" | head -4
for early in 1 2 3; do
  part bs1_$early 50 env SPMD_SKINNY_EARLY_TILES=$early python3 -m spmd_infer.bench bench.preset=llama-3-8b \
    bench.workload=decode 'bench.batch_sizes=[1]' bench.context=1024 bench.repeats=2 bench.output=$OUT/bs1.json
  echo "early=$early"; grep -E "runs:|Error" "$OUT/bs1_$early.txt" | cut -c1-150
done
rm -rf "$OUT"/*.run "$OUT"/*.json
