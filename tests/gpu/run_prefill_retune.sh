#!/usr/bin/env bash
# One 1-GPU device call (~8 min; KERNEL_TESTS=0 NANO=0 CHECKS=dsv2lite: ~5): prefill attention's retuned tiles (session 22, from run_tune_prefill.sh: standard
# heads (128, 32, 8, 2), MLA's wide heads (128, 32, 4, 2), the kernel alone 3-5% and 2x faster) end to end, with
# runtime.overlap_prefill on by default (session 22, run_overlap_prefill.sh). The prefill kernel tests in bf16 on
# the card, the Qwen3 and DeepSeek-V2-Lite checks against transformers, then the new tiles against the old
# (prefill_tiles_old.patch), interleaved twice, on DeepSeek-V2-Lite's TTFT (256 x 1k, each run's prefill seconds) and
# Llama-3-8B's prefill 8 x 2048 (MFU); then Qwen3-0.6B on the nano-vllm protocol. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
[[ ${KERNEL_TESTS:-1} == 1 ]] && test_part kernels 150 tests/kernels/test_prefill_attention.py
for model in ${CHECKS:-qwen3 dsv2lite}; do
  part "check_$model" 150 python3 tests/gpu/check_vs_transformers.py --model $model --layouts 1x1 --num-prompts 8 \
    --out "/tmp/chk_$model"
  grep -E "RESULT|OUTSIDE|Error" "$OUT/check_$model.txt" | head -4
done
old=$(patched_kernels tiles tests/gpu/prefill_tiles_old.patch)
for run in new old new2 old2; do
  pp=$PYTHONPATH; [[ $run == old* ]] && pp=$old
  dsv2_ttft_part "dsv2_$run" "$pp"
  part "llama_$run" 100 env PYTHONPATH="$pp" python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=grid \
    'bench.grid_batch_sizes=[8]' 'bench.input_lens=[2048]' 'bench.output_lens=[1]' \
    scheduler.max_num_batched_tokens=16384 bench.repeats=2 bench.output="$OUT/llama_$run.json"
  prefill_of "llama_$run"
done
if [[ ${NANO:-1} == 1 ]]; then
  nano_part nano -- bench.repeats=3
  nano_summary nano
fi
rm -rf "$OUT"/*.json "$OUT"/*.run
