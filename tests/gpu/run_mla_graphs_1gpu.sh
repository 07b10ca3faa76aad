#!/usr/bin/env bash
# One 1-GPU device call (~6 min), session 29 (only one GPU lent, so run_prefill_graphs_dpa3.sh's 2-GPU half waits):
# MLA's prefill groups now carry their own context_lens buffer (session 28's slice was misaligned past the first
# group and compiled a `_prefill_kernel` variant mid-run). The prefill-graph and MLA tests (the failed-capture and
# agreement tests among them; the 2-GPU ones skip), DeepSeek-V2-Lite on the nano-vllm protocol at dp1 eager then
# with prefill graphs (neither should warn of a compile), then where a graphed 8 x 64 prefill step's host time goes
# (profile with PDL off). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 240 tests/test_prefill_graphs.py tests/test_mla_triton_path.py
for graphs in false true; do
  part "nano_$graphs" 150 python3 -m spmd_infer.bench bench.preset=deepseek-v2-lite bench.workload=nano_vllm \
    runtime.prefill_graphs=$graphs bench.output="$OUT/nano_$graphs.json"
  echo "runtime.prefill_graphs=$graphs"; grep -E "^nano_vllm|compiled during|Error" "$OUT/nano_$graphs.txt" | cut -c1-160
  nano_summary "nano_$graphs"
  ttft_steps "nano_$graphs"
done
part profile 150 env SPMD_PDL=0 python3 -m spmd_infer.bench bench.preset=deepseek-v2-lite bench.workload=grid \
  'bench.grid_batch_sizes=[8]' 'bench.input_lens=[64]' 'bench.output_lens=[1]' bench.repeats=2 \
  bench.profile=true bench.profile_phase=prefill bench.profile_top=24 bench.output="$OUT/profile.json"
grep -E "^grid|host-bound|compiled during" "$OUT/profile.txt" | cut -c1-130
grep -A40 "^profile of" "$OUT/profile.txt" | cut -c1-150
rm -rf "$OUT"/*.run "$OUT"/*.json
