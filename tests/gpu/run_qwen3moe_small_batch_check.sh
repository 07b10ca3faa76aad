#!/usr/bin/env bash
# One 1-GPU device call (~5 min), written in session 31 (its device time had gone): the Qwen3-30B-A3B-shaped check
# at two sequences a step fails one row (row 12: its first divergence at token 7 outside transformers' top-5) with
# the MoE routing kernels on and off alike (run_moe_route_check_ab.sh), and passed at the default sixteen. The same
# check at one, two, four and sixteen sequences a step, then at two in float32 on both sides: a batch size's kernel
# path (a row that fails in float32 too), or the bf16 rule's limit on a random-weight MoE model (a near-tie in some
# layer's routing moves a row's logits far)? Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
for seqs in 1 2 4 16; do
  check_part 90 --model qwen3moe --extra scheduler.max_num_seqs=$seqs --out /tmp/check_qwen3moe
  echo "--- max_num_seqs=$seqs"; grep -E "^ +row" "$OUT/check.txt" | grep OUTSIDE
  mv "$OUT/check.txt" "$OUT/check_$seqs.txt"
done
check_part 90 --model qwen3moe --dtype float32 --extra scheduler.max_num_seqs=2 --out /tmp/check_qwen3moe
grep -E "^ +row" "$OUT/check.txt" | grep OUTSIDE
