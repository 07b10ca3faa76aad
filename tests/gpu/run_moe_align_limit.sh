#!/usr/bin/env bash
# One 1-GPU device call (~6 min), session 32: moe_align's one-program limit raised from 2048 to 16384 one-hot
# elements after time_moe_align.py found one program 4.4-12 us where the three kernels took 14-18 (DeepSeek-V2-Lite
# bs8-42, Qwen3-30B-A3B bs4-16 newly in one program). The MoE kernel and model tests in bf16 (run_moe_small_tile_
# verify.sh's 120 s cut them at 88%, none failed), then decode bs8 / bs16 of DeepSeek-V2-Lite and Qwen3-30B-A3B with
# the one-program path on and off (SPMD_MOE_ALIGN_ONE_PROGRAM=0). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part kernels 240 tests/kernels/test_fused_moe.py tests/kernels/test_moe_route.py tests/test_qwen2_moe.py \
  tests/test_deepseek.py
for preset in deepseek-v2-lite qwen3-30b-a3b; do
  for one in 1 0; do
    part "${preset}_$one" 80 env SPMD_MOE_ALIGN_ONE_PROGRAM=$one python3 -m spmd_infer.bench bench.preset=$preset \
      bench.workload=decode 'bench.batch_sizes=[8,16]' bench.context=1024 bench.output="$OUT/${preset}_$one.json"
    echo "--- $preset one_program=$one"; grep -E "^decode bs|Error" "$OUT/${preset}_$one.txt" | cut -c1-110
  done
done
rm -rf "$OUT"/*.run "$OUT"/*.json
