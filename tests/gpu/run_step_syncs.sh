#!/usr/bin/env bash
# One 1-GPU device call (~4 min): host syncs inside the step loop (find_step_syncs.py: sync debug mode around every
# timed step, each flagged sync by calling line). Session 22 found nano-vllm's prefill steps at 20-38 ms against 15.4
# ms of kernels with prefill steps in flight, and removed one sync (MLA's prefill plan): what else waits. Qwen3-0.6B
# on the nano-vllm protocol (64 sequences), Llama-3-8B's 8 x 2048 prefill, DeepSeek-V2-Lite decode bs64 @1k (MLA,
# MoE), and Qwen3-0.6B with sampling extras that settle at once (seeded top-p, a repetition penalty: their syncs are
# by design). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
# syncs NAME LIMIT BENCH_ARG...: one benchmark launch under the probe, its sync report printed
syncs() {
  local name=$1 limit=$2; shift 2
  part "$name" "$limit" python3 tests/gpu/find_step_syncs.py bench.output="$OUT/$name.json" "$@"
  grep -E -A12 "^SYNCS|Error" "$OUT/$name.txt" | cut -c1-200 | head -40
}
syncs nano 120 bench.preset=qwen3-0.6b bench.workload=nano_vllm bench.num_seqs=64
syncs prefill 120 bench.preset=llama-3-8b bench.workload=grid 'bench.grid_batch_sizes=[8]' 'bench.input_lens=[2048]' \
  'bench.output_lens=[4]' scheduler.max_num_batched_tokens=16384
syncs dsv2 150 bench.preset=deepseek-v2-lite bench.workload=decode 'bench.batch_sizes=[64]' bench.context=1024
syncs extras 120 bench.preset=qwen3-0.6b bench.workload=decode 'bench.batch_sizes=[16]' bench.context=256 \
  sampling.temperature=0.8 sampling.top_p=0.9 sampling.seed=1 sampling.repetition_penalty=1.1
rm -rf "$OUT"/*.json "$OUT"/*.run
