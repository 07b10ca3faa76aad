#!/usr/bin/env bash
# One 1-GPU device call (H100 or H200, <= 10 min), most important first: overlapped steps vs transformers;
# overlapped decode steps (runtime.overlap_steps) off vs on for Llama-3-8B bs1/bs64 @1k and the Qwen3-0.6B
# nano-vllm protocol; the split-KV minimum at 64 tokens instead of 256 (small-batch decode attention); then the
# whole bf16 kernel suite with the MLA Triton-path tests (the last H100 call ran out of its limit at ~45%).
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
rows() { grep -A8 "^case " "$OUT/$1.txt" | grep -v "^results"; }
# Overlapped steps feed sampled tokens back on the device (graphs included): outputs must still agree.
part overlap_check 80 python3 tests/gpu/check_vs_transformers.py --model tiny --layouts 1x1 --out /tmp/chk \
  --extra runtime.overlap_steps=true
grep -E "RESULT|Error" "$OUT/overlap_check.txt"
for overlap in false true; do
  part llama_overlap_$overlap 90 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
    'bench.batch_sizes=[64,1]' bench.context=1024 runtime.overlap_steps=$overlap bench.output=$OUT/llama_$overlap.json
  rows llama_overlap_$overlap
done
for overlap in false true; do
  part qwen_nano_$overlap 70 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=nano_vllm \
    runtime.overlap_steps=$overlap bench.output=$OUT/qwen_nano_$overlap.json
  rows qwen_nano_$overlap
done
# Qwen3-8B nano-vllm at dp1 with overlap, the baseline for run_issue3_recheck.sh's dp4 overlap row.
part qwen8_dp1_true 120 python3 -m spmd_infer.bench bench.preset=qwen3-8b bench.workload=nano_vllm \
  runtime.overlap_steps=true bench.output=$OUT/qwen8_dp1_true.json
rows qwen8_dp1_true
export SPMD_DECODE_MIN_SPLIT_TOKENS=64
part llama_split64 90 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
  'bench.batch_sizes=[64,1]' bench.context=1024 bench.profile=true bench.profile_top=6 bench.output=$OUT/llama_split64.json
grep -A14 "^case " "$OUT/llama_split64.txt" | grep -v "^results"
unset SPMD_DECODE_MIN_SPLIT_TOKENS
part kernels 220 python3 -m pytest -q tests/kernels tests/test_mla_triton_path.py
tail -3 "$OUT/kernels.txt"; grep -E "^FAILED" "$OUT/kernels.txt" | head
