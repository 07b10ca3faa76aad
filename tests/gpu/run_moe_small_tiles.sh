#!/usr/bin/env bash
# One 1-GPU device call (~4 min), written in session 31 (not yet run): MoE decode at batch 1-8 reads its experts at
# ~45-56% of the copy rate (run_moe_bs1_profile.sh: Qwen1.5-MoE's gate_up 19.9 us for 46 MB, down 12.4 us for 23 MB),
# its "small" tile (16, 64, 64, 4, 3) giving a grid under one wave (4 experts x 22 column tiles). A sweep of
# narrower and deeper tiles at those shapes (tune_fused_moe.py, timed in CUDA graphs against the weight-read bound):
# a better one becomes CUDA_CONFIGS["small"] (or a "tiny" kind for a row or two an expert). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
TILES="16,64,64,4,3;16,32,64,4,3;16,32,128,4,3;16,64,128,4,3;16,32,64,2,4;16,16,128,2,4;16,32,128,2,4;16,64,64,2,4"
part tiles 220 python3 tests/gpu/tune_fused_moe.py --shapes "1x1 decode bs1" --tiles "$TILES"
grep -A6 "^qwen1.5\|^dsv2\|^qwen3" "$OUT/tiles.txt" | cut -c1-160
part tiles_bs8 100 python3 tests/gpu/tune_fused_moe.py --shapes "1x1 decode bs8" --tiles "$TILES"
grep -A6 "^dsv2" "$OUT/tiles_bs8.txt" | cut -c1-160
