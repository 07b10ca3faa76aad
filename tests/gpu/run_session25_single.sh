#!/usr/bin/env bash
# One 1-GPU device call (~6 min) after session 25's push all-reduce: the RMSNorm kernel now ends in a shared
# @triton.jit helper (add_rms_norm_row, also the push kernel's epilogue), so its kernel tests in bf16 on the card and
# issue 4's single-GPU figures again (run_head_figures.sh: Llama-3-8B decode bs1 / bs64, prefill 8 x 2048,
# Qwen3-0.6B nano-vllm, bf16 and fp8 cache), for no change against session 24's. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
test_part kernels 200 tests/kernels/test_rmsnorm.py tests/kernels/test_push_all_reduce.py tests/kernels/test_qk_norm_rotary.py tests/kernels/test_pdl.py
bash tests/gpu/run_head_figures.sh
