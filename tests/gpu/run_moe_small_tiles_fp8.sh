#!/usr/bin/env bash
# One 1-GPU device call (~2 min), written in session 32 (not yet run): the float8 experts' small tile at decode
# batch 1-8, after the bf16 one went from (16, 64, 64, 4, 3) to (16, 32, 128, 2, 4) (run_moe_small_tiles.sh: 0.77-0.85x
# the time at bs1). With float8 activations the gate / up kernel's N and K steps are a whole 128-feature scale group
# (fused_moe: bn_up = SCALE_K, BLOCK_K = FP8_ACT_BLOCK_K), so the sweep varies the down kernel's N, the warps and the
# stages. A better one becomes CUDA_CONFIGS_FP8["small"]. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
TILES="16,64,64,4,3;16,32,128,2,4;16,64,128,2,4;16,128,128,4,3;16,32,128,4,3;16,64,128,4,4;16,32,64,2,4"
part tiles 150 python3 tests/gpu/tune_fused_moe.py --fp8 --shapes "1x1 decode bs" --tiles "$TILES"
grep -A6 "^qwen1.5\|^dsv2\|^qwen3" "$OUT/tiles.txt" | cut -c1-160
