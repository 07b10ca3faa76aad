#!/usr/bin/env bash
# One 2-GPU device call (~7 min), session 28, after run_prefill_graphs_dpa.sh: under DP attention a step that any DP
# rank prefills now replays the prefill graphs on every rank, one that decodes running its decode attention between
# the pieces (before: such mixed steps ran eagerly everywhere, decode graphs included). The prefill-graph tests (the
# 2-GPU job test now asserts decode-phase replays, and the 1-GPU ones with k and v handed over unfused), the MLA
# hand-over tests on the card, then DeepSeek-V2-Lite dp2 + DP attention on the nano-vllm protocol with 64 sequences
# a rank (256 requests: new ones prefill while the other rank decodes), prefill graphs on / off. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
test_part tests 240 tests/test_prefill_graphs.py tests/test_mla_triton_path.py
for graphs in true false; do
  part "nano_$graphs" 150 torchrun --nproc-per-node 2 -m spmd_infer.bench bench.preset=deepseek-v2-lite \
    bench.workload=nano_vllm parallel.dp=2 parallel.dp_attention=true scheduler.max_num_seqs=64 \
    runtime.prefill_graphs=$graphs bench.output="$OUT/nano_$graphs.json"
  echo "deepseek-v2-lite nano-vllm dp2 + DP attention, 64 sequences a rank, runtime.prefill_graphs=$graphs"
  grep -E "^nano_vllm|prefill CUDA|eagerly|Error" "$OUT/nano_$graphs.txt" | cut -c1-160
  nano_summary "nano_$graphs"
done
rm -rf "$OUT"/*.run "$OUT"/*.json
