#!/usr/bin/env bash
# One 1-GPU device call (~3 min): decode attention's programs longest context first in the engine (the order the
# host computes per step, ForwardBatch.decode_order): the decode kernel tests in bf16, Qwen3 (graphed decode) against
# transformers, and nano-vllm bf16 with it and without (SPMD_DECODE_LONGEST_FIRST=0). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
part kernels 90 python3 -m pytest -q -n 8 tests/kernels/test_decode_attention.py
tail -1 "$OUT/kernels.txt"; grep -E "^FAILED" "$OUT/kernels.txt" | head
part qwen3 90 python3 tests/gpu/check_vs_transformers.py --model qwen3 --layouts 1x1 --out /tmp/chk
grep -E "RESULT|OUTSIDE|failed|Error" "$OUT/qwen3.txt" | head -5
nano_part nano_first
nano_part nano_batch_order SPMD_DECODE_LONGEST_FIRST=0
nano_part nano_first2
rm -rf "$OUT"/*.run "$OUT"/*.json
