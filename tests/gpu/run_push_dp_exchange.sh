#!/usr/bin/env bash
# One 2-GPU device call (~5 min): DP attention's gather and reduce-scatter on the push kernel (session 26,
# kernels/push_dp_exchange.py), checked on the cards: its kernel tests and the 2-GPU test against NCCL's path (eager
# and in CUDA graphs), the all-reduce tests it shares the kernel with, then DeepSeek-V2-Lite at dp2 + DP attention
# against transformers. run_push_dp_exchange2.sh times it. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
test_part tests 240 tests/test_dp_exchange.py tests/kernels/test_push_dp_exchange.py \
  tests/kernels/test_push_all_reduce.py tests/test_symm_all_reduce.py
check_part 240 --model dsv2lite --layouts 2x1 --num-prompts 8 --out /tmp/chk_dpx --extra parallel.dp_attention=true \
  model.max_model_len=4096
python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['layout'])" \
  /tmp/chk_dpx/dsv2lite-2x1.out.jsonl.run/metrics.json
rm -rf "$OUT"/*.json "$OUT"/*.run
