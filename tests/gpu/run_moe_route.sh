#!/usr/bin/env bash
# One 1-GPU device call (~5 min), session 31: MoE routing in one kernel (kernels/moe_route.py) and small batches'
# expert grouping in one program (kernels/moe_align.py), after run_moe_bs1_profile.sh found their PyTorch ops and
# three-kernel grouping ~28 us of a MoE layer's ~140 at batch 1. Their kernel tests in bf16; Qwen3-30B-A3B's shape
# against transformers with two sequences a step (16 pairs: the one-program grouping); then decode bs1 / bs64 of
# three MoE presets with both on (the default) and both off (SPMD_MOE_ROUTE_KERNEL=0 SPMD_MOE_ALIGN_ONE_PROGRAM=0),
# interleaved. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part kernels 90 tests/kernels/test_moe_route.py tests/kernels/test_fused_moe.py -k "route or align"
check_part 120 --model qwen3moe --extra scheduler.max_num_seqs=2 --out /tmp/check_qwen3moe
for preset in ${PRESETS:-qwen1.5-moe-a2.7b deepseek-v2-lite qwen3-30b-a3b}; do
  for mode in on off; do
    envs=(); [[ $mode == off ]] && envs=(SPMD_MOE_ROUTE_KERNEL=0 SPMD_MOE_ALIGN_ONE_PROGRAM=0)
    part "${preset}_$mode" 90 env "${envs[@]}" python3 -m spmd_infer.bench bench.preset=$preset \
      bench.workload=decode 'bench.batch_sizes=[1,64]' bench.context=1024 bench.output="$OUT/${preset}_$mode.json"
    echo "--- $preset $mode"; grep -E "^decode bs|Error" "$OUT/${preset}_$mode.txt" | cut -c1-110
  done
done
rm -rf "$OUT"/*.run
