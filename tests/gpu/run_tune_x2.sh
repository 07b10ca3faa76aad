#!/usr/bin/env bash
# Kernel sweeps on a 2-GPU host (~5 min), one GPU each: MLA decode (tune_mla_decode.py) and fused MoE
# (tune_fused_moe.py), both timed in CUDA graphs against the card's copy rate.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
CUDA_VISIBLE_DEVICES=0 part tune_mla 420 python3 tests/gpu/tune_mla_decode.py &
CUDA_VISIBLE_DEVICES=1 part tune_moe 420 python3 tests/gpu/tune_fused_moe.py &
wait
grep -v "^  .* failed:" "$OUT/tune_mla.txt" | tail -48
tail -40 "$OUT/tune_moe.txt"
