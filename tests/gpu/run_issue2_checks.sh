#!/usr/bin/env bash
# Issue 2's GPU verification in one device call: kernel tests in bf16, then tiny and ~1B random Llama
# against transformers (bf16, top-k logprob rule) in the layouts of $LAYOUTS (default "1x1 2x2": 4 GPUs).
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__)"
OUT=${OUT:-/tmp/out}
python3 -m pytest -q tests/kernels -x 2>&1 | tail -3 | tee "$OUT/kernels.txt"
python3 tests/gpu/check_vs_transformers.py --model tiny --layouts ${LAYOUTS:-1x1 2x2} --out /tmp/chk 2>&1 | tee "$OUT/tiny.txt" | grep -E "RESULT|row|Error|error" 
python3 tests/gpu/check_vs_transformers.py --model 1b --layouts ${LAYOUTS:-1x1 2x2} --out /tmp/chk 2>&1 | tee "$OUT/1b.txt" | grep -E "RESULT|row|Error|error|built"
