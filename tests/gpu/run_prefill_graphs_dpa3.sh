#!/usr/bin/env bash
# One 2-GPU device call (~5 min), written at the end of session 28 without device time left to run it. Its
# run_prefill_graphs_dpa2.sh call gave DeepSeek-V2-Lite nano-vllm at dp2 + DP attention (64 sequences a rank) 8890 /
# 8868 tok/s with prefill graphs against 6455 / 7396 eager, but each timed case compiled a `_prefill_kernel` variant
# (1.5 s in its first step when the on-disk cache was cold: TTFT median 2.35 s against 1.10): MLA's prefill groups
# passed a slice of the batch's context_lens, misaligned past the first group. They now carry their own buffer, and
# the ranks agree after every captured bucket. The prefill-graph and MLA tests (the failed-capture job test among
# them), then the nano-vllm pair again, eager first: neither should warn of a compile now. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
test_part tests 240 tests/test_prefill_graphs.py tests/test_mla_triton_path.py
for graphs in false true; do
  part "nano_$graphs" 120 torchrun --nproc-per-node 2 -m spmd_infer.bench bench.preset=deepseek-v2-lite \
    bench.workload=nano_vllm parallel.dp=2 parallel.dp_attention=true scheduler.max_num_seqs=64 \
    runtime.prefill_graphs=$graphs bench.output="$OUT/nano_$graphs.json"
  echo "runtime.prefill_graphs=$graphs"; grep -E "^nano_vllm|compiled during|Error" "$OUT/nano_$graphs.txt" | cut -c1-160
  ttft_steps "nano_$graphs"
done
rm -rf "$OUT"/*.run "$OUT"/*.json
