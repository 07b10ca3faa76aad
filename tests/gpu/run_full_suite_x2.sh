#!/usr/bin/env bash
# One 2-GPU device call (~9 min), written in session 29: the whole test suite but the kernel suite
# (run_kernel_suite.sh: ~1.5 min on one GPU) on a 2-GPU host, so that the GPU-only tests (the CUDA-graph and
# prefill-graph jobs, the 2-GPU exchanges and all-reduces, the checks that skip on a CPU) all run at HEAD at once.
# Session 29's first 2-GPU call found a GPU-only failure (an idle DP rank's prefill-graph padding) that no CPU test
# saw; its first try at this script (`pytest -q tests`, 400 s) ran out of time with ~15 tests failed, unnamed (-q
# names failures only at the end). -vv (-v net of test_part's -q) names each result as it ends, so a part cut short
# still says which failed. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
test_part all 520 -vv --tb=short tests --ignore=tests/kernels  # -vv: test_part passes -q first
grep -E " (FAILED|ERROR) " "$OUT/all.txt" | sed 's/^\[gw[0-9]*\] \[ *[0-9]*%\] //' | sort | head -40
rm -rf "$OUT"/*.run
