#!/usr/bin/env bash
# One 1-GPU device call (~6 min), session 31: MoE routing in one kernel (kernels/moe_route.py) and small batches'
# expert grouping in one program (kernels/moe_align.py), after run_moe_bs1_profile.sh found their PyTorch ops and
# three-kernel grouping ~28 us of a MoE layer's ~140 at batch 1; and shared experts' output added inside fused_moe's
# last kernel (SPMD_MOE_SHARED_IN_SUM=1, off by default: written after this session's device time had gone). Their
# kernel tests in bf16 and the shared-output test; Qwen1.5-MoE's shape against transformers with two sequences a
# step and the shared output in the kernel (8 pairs: the one-program grouping); then decode bs1 / bs64 of MoE
# presets with all on (the shared output in the kernel), the shared output added after fused_moe (today's
# defaults), and all off (also SPMD_MOE_ROUTE_KERNEL=0 SPMD_MOE_ALIGN_ONE_PROGRAM=0). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part kernels 90 tests/kernels/test_moe_route.py tests/kernels/test_fused_moe.py tests/test_qwen2_moe.py \
  -k "route or align or shared"
check_part 120 SPMD_MOE_SHARED_IN_SUM=1 --model qwen2moe --extra scheduler.max_num_seqs=2 --out /tmp/check_qwen2moe
for preset in ${PRESETS:-qwen1.5-moe-a2.7b deepseek-v2-lite}; do
  for mode in on shared_after off; do
    envs=(SPMD_MOE_SHARED_IN_SUM=1)
    [[ $mode != on ]] && envs=(SPMD_MOE_SHARED_IN_SUM=0)
    [[ $mode == off ]] && envs+=(SPMD_MOE_ROUTE_KERNEL=0 SPMD_MOE_ALIGN_ONE_PROGRAM=0)
    part "${preset}_$mode" 90 env "${envs[@]}" python3 -m spmd_infer.bench bench.preset=$preset \
      bench.workload=decode 'bench.batch_sizes=[1,64]' bench.context=1024 bench.output="$OUT/${preset}_$mode.json"
    echo "--- $preset $mode"; grep -E "^decode bs|Error" "$OUT/${preset}_$mode.txt" | cut -c1-110
  done
done
rm -rf "$OUT"/*.run
