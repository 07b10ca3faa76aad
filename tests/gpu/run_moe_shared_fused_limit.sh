#!/usr/bin/env bash
# One 1-GPU device call (~8 min), session 33, after shared experts inside fused_moe went on by default at up to 64
# tokens a step (run_moe_shared_fused.sh: faster at bs1 / bs8 / bs64 on both presets). The MoE layer tests in bf16
# with the new default; decode bs128 / bs256 with the limit at 64 (off there) and at 256 (on), to place the limit;
# then where batch-1 decode time goes now (run_moe_bs1_profile.sh's profile, with the default). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part kernels 120 tests/test_qwen2_moe.py tests/kernels/test_fused_moe.py tests/kernels/test_moe_route.py
for preset in qwen1.5-moe-a2.7b deepseek-v2-lite; do
  for tokens in 64 256; do
    BATCHES=128,256 LIMIT=90 decode_part "${preset}_$tokens" "$preset" SPMD_MOE_SHARED_FUSED_TOKENS=$tokens
  done
done
for preset in qwen1.5-moe-a2.7b deepseek-v2-lite; do
  part "profile_$preset" 120 env SPMD_PDL=0 python3 -m spmd_infer.bench bench.preset=$preset bench.workload=decode \
    'bench.batch_sizes=[1]' bench.context=1024 bench.profile=true bench.profile_top=30 \
    bench.output="$OUT/profile_$preset.json"
  grep -E "^decode bs" "$OUT/profile_$preset.txt" | cut -c1-110
  grep -A36 "^profile of" "$OUT/profile_$preset.txt" | cut -c1-150
done
rm -rf "$OUT"/*.run "$OUT"/*.json
