#!/usr/bin/env bash
# One GPU (~5 min): every kernel against its torch reference in bf16 (and fp16/fp32) on the card, with the MLA CUDA
# path. One process compiles the suite's Triton variants one after another (over 220 s for a quarter of it on an
# H200), so pytest-xdist spreads the cases over 12 workers sharing the GPU: carry [".whl"] after
# tests/gpu/fetch_wheels.sh.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
test_part kernel_suite 540 tests/kernels tests/test_mla_triton_path.py
rm -rf "$OUT"/*.run
