#!/usr/bin/env bash
# One 1-GPU device call (~3 min), session 31: run_moe_route.sh's Qwen3-30B-A3B-shaped check at two sequences a step
# failed one row (its first divergence outside transformers' top-5) with the routing kernel and the one-program
# grouping on. The same check with both off (SPMD_MOE_ROUTE_KERNEL=0 SPMD_MOE_ALIGN_ONE_PROGRAM=0), then on again:
# whether that row is theirs or the batch-of-two numerics'. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
check_part 100 SPMD_MOE_ROUTE_KERNEL=0 SPMD_MOE_ALIGN_ONE_PROGRAM=0 --model qwen3moe --extra scheduler.max_num_seqs=2 \
  --out /tmp/check_qwen3moe
grep -E "^ +row" "$OUT/check.txt" | tr '\n' ';'; echo; mv "$OUT/check.txt" "$OUT/check_off.txt"
check_part 100 --model qwen3moe --extra scheduler.max_num_seqs=2 --out /tmp/check_qwen3moe
grep -E "^ +row" "$OUT/check.txt" | tr '\n' ';'; echo
