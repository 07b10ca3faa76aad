#!/usr/bin/env bash
# One 1-GPU device call (~5 min): MLA's prefill plan without its host sync (session 22). Each prefill step planned
# its expansion groups by copying cu_seqlens / context_lens / block tables back from the device, a sync that waited
# for the GPU's queued work (the previous prefill step's, with runtime.overlap_prefill) before the rest of the step
# was launched; it now reads the host arrays the batch was packed from. The DeepSeek-V2-Lite check against
# transformers, then its 256 x 1k TTFT against the old plan (mla_plan_sync_old.patch), interleaved twice, each
# run's prefill seconds (session 22 with the sync: 3.19-3.20 s on an H200). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
check_part 150 --model dsv2lite --layouts 1x1 --num-prompts 8 \
  --out /tmp/chk_dsv2
old=$(patched_engine mla_sync tests/gpu/mla_plan_sync_old.patch)
for run in new old new2 old2; do
  pp=$PYTHONPATH; [[ $run == old* ]] && pp=$old
  dsv2_ttft_part "dsv2_$run" "$pp"
done
rm -rf "$OUT"/*.json "$OUT"/*.run
