#!/usr/bin/env bash
# One 4-GPU device call (~3 min): what run_session4.sh left unverified, tiny and Qwen3 at dp2 x tp2 against
# transformers (tensor-parallel all-reduces inside CUDA graphs, the shared-memory DP exchange), now with the PDL
# triggers of session 5 in RMSNorm / SiLU / the decode reduce.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part tiny_2x2 120 python3 tests/gpu/check_vs_transformers.py --model tiny --layouts 2x2 --out /tmp/chk2
grep -E "RESULT|OUTSIDE|Error" "$OUT/tiny_2x2.txt" | head -3
part qwen3_2x2 140 python3 tests/gpu/check_vs_transformers.py --model qwen3 --layouts 2x2 --num-prompts 8 --out /tmp/chk3
grep -E "RESULT|OUTSIDE|Error" "$OUT/qwen3_2x2.txt" | head -3
rm -rf "$OUT"/*.run
