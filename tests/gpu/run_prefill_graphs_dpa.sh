#!/usr/bin/env bash
# One 2-GPU device call (~6 min), session 28: prefill CUDA graphs under DP attention. Every DP rank replays the
# bucket of the rank with the most tokens (decided from DPMeta alone), an idle rank padding rows only; a step that any
# rank decodes runs eagerly everywhere. The prefill-graph tests (the 2-GPU one: the tiny Llama and DeepSeek-V2 at
# dp2 + DP attention through graphs against eager, one rank idle; the 1-GPU ones), DeepSeek-V2-Lite at dp2 + DP
# attention against transformers with them, then its TTFT at dp2 + DP attention with them on / off at 16 x 64
# (512-token steps a rank) and 128 x 128 (8192: past its largest bucket, eager both ways). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
test_part tests 240 tests/test_prefill_graphs.py
check_part 200 --model dsv2lite --layouts 2x1 --extra parallel.dp_attention=true
for graphs in true false; do
  part "dpa_$graphs" 150 torchrun --nproc-per-node 2 -m spmd_infer.bench bench.preset=deepseek-v2-lite \
    bench.workload=grid 'bench.grid_batch_sizes=[16,128]' 'bench.input_lens=[64,128]' 'bench.output_lens=[1]' \
    bench.repeats=2 parallel.dp=2 parallel.dp_attention=true runtime.prefill_graphs=$graphs \
    bench.output="$OUT/dpa_$graphs.json"
  echo "deepseek-v2-lite dp2 + DP attention, runtime.prefill_graphs=$graphs"
  grep -E "^grid (16x64|128x128)|prefill CUDA|eagerly|Error" "$OUT/dpa_$graphs.txt" | cut -c1-160
done
rm -rf "$OUT"/*.run "$OUT"/*.json
