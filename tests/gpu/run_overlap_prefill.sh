#!/usr/bin/env bash
# One 1-GPU device call (~4 min): runtime.overlap_prefill (built in session 21, on by default since session 22): prefill
# steps launch the next step before their first tokens reach the host. run_nano_prefill_host.sh found nano-vllm's
# prefill steps at ~20 ms against 15.4 ms of kernels (Qwen3-0.6B, 8192 tokens a step), the host scheduling each next
# step only once the last one's tokens arrived. The Qwen3 check against transformers with it on; then, each in one
# launch with bench.overlap_prefill_ab (off and on in turn, three runs each: prefill seconds move more between
# launches than the effect), Qwen3-0.6B on the nano-vllm protocol, a prefill-bound grid (256 x 1024 tokens, 4 out)
# and DeepSeek-V2-Lite's TTFT (256 x 1k). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
check_part 150 --model qwen3 --layouts 1x1 --num-prompts 8 \
  --extra runtime.overlap_prefill=true --out /tmp/chk_ovp
ab=(bench.overlap_prefill_ab=true bench.repeats=3)
# ab_case NAME LIMIT BENCH_ARG...: one A/B launch, its rows and every run's prefill seconds printed.
ab_case() {
  local name=$1 limit=$2; shift 2
  part "$name" "$limit" python3 -m spmd_infer.bench "${ab[@]}" bench.output="$OUT/$name.json" "$@"
  grep -E "^(nano_vllm|grid|decode bs)|runs:|Error" "$OUT/$name.txt" | cut -c1-150
  python3 - "$OUT/$name.json" <<'PY'
import json, sys
for case in json.load(open(sys.argv[1]))["cases"]:
    print(f"  {case['name']}: prefill s " + " / ".join(f"{r['prefill_s']:.3f}" for r in case.get("runs", [])))
PY
}
ab_case nano 200 bench.preset=qwen3-0.6b bench.workload=nano_vllm
ab_case grid 150 bench.preset=qwen3-0.6b bench.workload=grid 'bench.grid_batch_sizes=[256]' \
  'bench.input_lens=[1024]' 'bench.output_lens=[4]'
ab_case dsv2 200 bench.preset=deepseek-v2-lite bench.workload=decode 'bench.batch_sizes=[256]' bench.context=1024
rm -rf "$OUT"/*.json "$OUT"/*.run
