#!/usr/bin/env bash
# One 1-GPU device call (~4 min), session 36: DeepSeek-V2-Lite from its block-float8 copy against transformers with
# the two down-projections separate (separate_mla_down_projections.patch), to set beside run_mla_down_proj.sh's
# merged check (0 exact + 15 within top-5, row 5 outside at a 0.016-nat near tie); then run_nano_profile.sh's
# decode-step profile of Qwen3-0.6B on the nano-vllm protocol over the bf16 and the float8 cache. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
separate=$(patched_kernels separate tests/gpu/separate_mla_down_projections.patch)
check_part 150 PYTHONPATH="$separate" --model dsv2lite --layouts 1x1 --block-fp8 --out /tmp/chk_separate_fp8
grep -E "row" "$OUT/check.txt" | head -16
bash tests/gpu/run_nano_profile.sh
