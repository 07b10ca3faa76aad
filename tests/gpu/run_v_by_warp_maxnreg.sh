#!/usr/bin/env bash
# One 1-GPU device call (~6 min), session 38: float8 decode tiles of 4 warps capped at 128 registers a thread
# (decode_fp8_maxnreg.patch: with V dealt by warp (128, 4, 3) takes 147, three programs an SM; capped, four, with 28
# bytes spilled, ptx_census.py decode --maxnreg 128), the kernel alone over tune_decode_attention's shapes and
# Qwen3-0.6B nano-vllm over the float8 cache, capped against the tree, interleaved twice; then issue 4's figures at
# HEAD (run_head_figures.sh). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
capped=$(patched_kernels maxnreg tests/gpu/decode_fp8_maxnreg.patch)
for run in capped tree; do
  pp=$PYTHONPATH; [[ $run == capped ]] && pp=$capped
  part "tiles_$run" 100 env PYTHONPATH="$pp" python3 tests/gpu/tune_decode_attention.py --fp8 --configs "128,4,4 64,4,6"
  echo "--- $run"; grep -vE "^\s*$|warn|\(default\)$" "$OUT/tiles_$run.txt" | tail -24 | cut -c1-110
done
for run in 1 2; do
  nano_part "nano_capped_$run" PYTHONPATH="$capped" -- cache.dtype=fp8
  nano_part "nano_tree_$run" -- cache.dtype=fp8
done
rm -rf "$OUT"/*.run "$OUT"/*.json
bash tests/gpu/run_head_figures.sh
