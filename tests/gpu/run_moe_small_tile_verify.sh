#!/usr/bin/env bash
# One 1-GPU device call (~6 min), session 32: after run_moe_small_tiles.sh put (16, 32, 128, 2, 4) first at batch
# 1-8 on every MoE shape (fused_moe's "small" tile now) and run_moe_route.sh found the shared output inside
# fused_moe's sum faster (SPMD_MOE_SHARED_IN_SUM now on by default). The MoE kernel and model tests in bf16;
# moe_align's one-program limit timed over decode batches (tests/gpu/time_moe_align.py: at bs8 the three-kernel
# path took ~18 us against ~3 in one program); Qwen1.5-MoE's shape against transformers; decode bs1 / bs8 / bs64 of
# the MoE presets with the new defaults. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part kernels 120 tests/kernels/test_fused_moe.py tests/kernels/test_moe_route.py tests/test_qwen2_moe.py \
  tests/test_deepseek.py
part align 90 python3 tests/gpu/time_moe_align.py
cat "$OUT/align.txt" | tail -25
check_part 120 --model qwen2moe --extra scheduler.max_num_seqs=2 --out /tmp/check_qwen2moe
for preset in ${PRESETS:-qwen1.5-moe-a2.7b deepseek-v2-lite qwen3-30b-a3b}; do
  part "$preset" 100 python3 -m spmd_infer.bench bench.preset=$preset bench.workload=decode \
    'bench.batch_sizes=[1,8,64]' bench.context=1024 bench.output="$OUT/$preset.json"
  echo "--- $preset"; grep -E "^decode bs|Error" "$OUT/$preset.txt" | cut -c1-110
done
rm -rf "$OUT"/*.run "$OUT"/*.json
