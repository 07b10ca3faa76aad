#!/usr/bin/env bash
# One 2-GPU device call (~3 min): tp > 1 jobs vote on a stop over a gloo group of every rank (session 22,
# ParallelDims.host_group; the NCCL all-reduce before it stalled one overlapped step in eight), made at job setup on
# CUDA for the first time here. The Qwen3 check against transformers at tp2 (a whole job through it), then the
# reliability test whose first run signals one TP rank only (SIGTERM at step 30 on rank 1: both ranks must stop
# after step 32). Its later runs compare a resumed job with the fp32 CPU reference, which a bf16 run on the GPU
# may not match token for token: read its first assertion. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
check_part 150 --model qwen3 --layouts 1x2 --num-prompts 8 \
  --out /tmp/chk_vote
part vote 200 python3 -m pytest -q -x tests/test_reliability.py -k kill_and_sigterm
tail -1 "$OUT/vote.txt"; grep -E "^E |stopped by|gloo|Gloo" "$OUT/vote.txt" | head -12
