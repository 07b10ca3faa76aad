#!/usr/bin/env bash
# One 1-GPU device call (~7 min): runtime.overlap_prefill (built in session 21 after its device time, off): prefill
# steps launch the next step before their first tokens reach the host. run_nano_prefill_host.sh found nano-vllm's
# prefill steps at ~20 ms against 15.4 ms of kernels (Qwen3-0.6B, 8192 tokens a step), the host scheduling each next
# step only once the last one's tokens arrived. The Qwen3 check against transformers with it on; Qwen3-0.6B on the
# nano-vllm protocol on / off twice, interleaved (prefill seconds, TTFT); a prefill-bound grid (256 x 1024 tokens, 4
# out) on / off; DeepSeek-V2-Lite's TTFT (256 x 1k) on / off. Turn it on if the check holds and nothing is slower.
# Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
OVP=runtime.overlap_prefill
part check 150 python3 tests/gpu/check_vs_transformers.py --model qwen3 --layouts 1x1 --num-prompts 8 \
  --extra "$OVP=true" --out /tmp/chk_ovp
grep -E "RESULT|OUTSIDE|Error" "$OUT/check.txt" | head -4
for pass in 1 2; do
  for on in true false; do
    nano_part "nano_${on}_$pass" -- "$OVP=$on"
    nano_summary "nano_${on}_$pass"
  done
done
for on in true false; do
  part "grid_$on" 100 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=grid \
    'bench.grid_batch_sizes=[256]' 'bench.input_lens=[1024]' 'bench.output_lens=[4]' "$OVP=$on" \
    bench.output="$OUT/grid_$on.json"
  echo "--- grid $OVP=$on"; grep -E "^grid|Error" "$OUT/grid_$on.txt" | cut -c1-120
  part "dsv2_$on" 120 python3 -m spmd_infer.bench bench.preset=deepseek-v2-lite bench.workload=decode \
    'bench.batch_sizes=[256]' bench.context=1024 "$OVP=$on" bench.output="$OUT/dsv2_$on.json"
  echo "--- dsv2 $OVP=$on"; grep -E "^decode bs|Error" "$OUT/dsv2_$on.txt" | cut -c1-120
done
rm -rf "$OUT"/*.json "$OUT"/*.run
