#!/usr/bin/env bash
# One 1-GPU device call (~5 min): paged prefill attention's tiles and query-tile order (tune_prefill_attention.py),
# never swept on a GPU before: the first slice's (64, 64, 4, 2) ran ~160 TFLOP/s over nano-vllm's prompts in session
# 21's profile (run_nano_prefill_profile.sh), 3.3 of a prefill step's 15.4 ms of kernels. Four shapes: a nano-vllm
# prefill step of Qwen3-0.6B, Llama-3-8B 8 x 2048 and a 2048-token chunk over 6k cached, DeepSeek-V2-Lite's MLA
# 8 x 1024. Retune prefill_attention.CUDA_CONFIGS (and heavy_first) from it, then time nano-vllm and the 8 x 2048
# prefill. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
part tune 540 python3 tests/gpu/tune_prefill_attention.py
grep -v "failed:" "$OUT/tune.txt" | head -80
