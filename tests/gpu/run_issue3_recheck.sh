#!/usr/bin/env bash
# One 4-GPU device call (~4 min): issue 3's correctness check rerun on the graphed Triton MLA path (it
# replaced the torch path after the first 4-GPU check): DeepSeek-V2-Lite-shaped MLA+MoE, dp2 x tp2 and
# dp4 with DP attention, CUDA graphs on, vs transformers (bf16, top-k logprob rule); then the decoupled
# dp2 x tp2 layout, and Qwen3-8B nano-vllm dp4 (exchange split into collective and wait; overlap off/on).
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part dsv2_dpattn 200 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 2x2 4x1 --num-prompts 8 \
  --out /tmp/chk --extra parallel.dp_attention=true model.max_model_len=4096
grep -E "RESULT|OUTSIDE|Error" "$OUT/dsv2_dpattn.txt" | head
grep -h "captured" /tmp/chk/dsv2lite-*.run/rank0.log 2>/dev/null | head -2
part dsv2_decoupled 120 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 2x2 --num-prompts 8 \
  --out /tmp/chk2 --extra parallel.dp_attention=false model.max_model_len=4096
grep -E "RESULT|OUTSIDE|Error" "$OUT/dsv2_decoupled.txt" | head
for overlap in false true; do
  part qwen8_dp4_$overlap 90 torchrun --nproc-per-node 4 -m spmd_infer.bench bench.preset=qwen3-8b \
    bench.workload=nano_vllm parallel.dp=4 runtime.overlap_steps=$overlap bench.output=$OUT/qwen8_dp4_$overlap.json
  grep -A4 "^case " "$OUT/qwen8_dp4_$overlap.txt" | grep -v "^results"
done
