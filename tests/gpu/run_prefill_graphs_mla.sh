#!/usr/bin/env bash
# One 1-GPU device call (~6 min), session 28: MLA layers hand their prefill to the replay too (the latents stored
# inside the piece, q formed in attention's static input), so DeepSeek models take prefill CUDA graphs with
# SPMD_PREFILL_GRAPHS_MOE=1. The prefill-graph job tests (the tiny DeepSeek-V2 and V3 through graphs against eager,
# chunked prompts and shared prefixes), DeepSeek-V2-Lite against transformers with graphs, Qwen3-MoE against
# transformers eager (session 28's first call gave 3 exact + 12 within + 1 outside through graphs: the same rows
# eager would make that the random model's near ties), then DeepSeek-V2-Lite TTFT on / off at 8 x 64, 64 x 128 and
# 256 x 512. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 200 tests/test_prefill_graphs.py
check_part 200 SPMD_PREFILL_GRAPHS_MOE=1 --model dsv2lite --layouts 1x1
check_part 200 SPMD_PREFILL_GRAPHS_MOE=0 --model qwen3moe --layouts 1x1
grep -E "row [0-9]+:" "$OUT/check.txt" | head -16
for moe in 1 0; do
  part "mla_$moe" 150 env SPMD_PREFILL_GRAPHS_MOE=$moe python3 -m spmd_infer.bench bench.preset=deepseek-v2-lite \
    bench.workload=grid 'bench.grid_batch_sizes=[8,64,256]' 'bench.input_lens=[64,128,512]' 'bench.output_lens=[1]' \
    bench.repeats=2 bench.output="$OUT/mla_$moe.json"
  echo "deepseek-v2-lite SPMD_PREFILL_GRAPHS_MOE=$moe"
  grep -E "^grid (8x64|64x128|256x512)|prefill CUDA|eagerly|Error" "$OUT/mla_$moe.txt" | cut -c1-160
done
rm -rf "$OUT"/*.run "$OUT"/*.json
