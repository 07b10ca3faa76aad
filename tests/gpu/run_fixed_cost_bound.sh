#!/usr/bin/env bash
# One 1-GPU device call (~5 min), session 36: an upper bound on what fusing the RMSNorms and the SiLU into their
# neighbours could gain where a decode step is latency-bound (Qwen3-0.6B at small batches, the nano-vllm protocol's
# tail): skip_norms_and_silu.patch makes both no-ops (wrong outputs, timing only). Decode @1k bs1 / bs16 / bs64 and
# nano-vllm over the float8 cache, the tree against the patched copy, interleaved twice. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
skipped=$(patched_kernels skip tests/gpu/skip_norms_and_silu.patch)
for run in tree1 skipped1 tree2 skipped2; do
  pp=$PYTHONPATH; [[ $run == skipped* ]] && pp=$skipped
  BATCHES=1,16,64 LIMIT=90 decode_part "$run" qwen3-0.6b PYTHONPATH="$pp" -- bench.repeats=2
done
for run in tree skipped; do
  pp=$PYTHONPATH; [[ $run == skipped ]] && pp=$skipped
  nano_part "nano_$run" PYTHONPATH="$pp" -- cache.dtype=fp8
  nano_summary "nano_$run"
done
rm -rf "$OUT"/*.json "$OUT"/*.run
