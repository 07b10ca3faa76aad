#!/usr/bin/env bash
# One 1-GPU device call (~3 min), written in session 33 (its device time had gone): the down kernel's own tile
# (fused_moe.DOWN_TILES, None everywhere: the gate / up tile) at decode, where Qwen3-30B-A3B's bs1 profile showed down
# reading its weights at 68% of the copy rate against gate / up's 81% (its K is the experts' intermediate size,
# 768-1408). The gate / up tile stays the small default; each down tile is timed with it, both kernels together,
# against the engine's pick, on one GPU's decode shapes (bs64 / bs256 here also take the small tile: compare
# within a shape). A down tile first at bs1 and bs8 on all three models becomes DOWN_TILES["small"]. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
DOWN="32,64,2,4;64,128,4,4;64,64,4,4;16,128,2,4;128,128,4,3;32,256,4,3;64,256,4,3"
part down 150 python3 tests/gpu/tune_fused_moe.py --shapes "1x1 decode bs" --tiles "16,32,128,2,4" --down-tiles "$DOWN"
grep -A7 "^qwen1.5\|^dsv2\|^qwen3" "$OUT/down.txt" | cut -c1-170
