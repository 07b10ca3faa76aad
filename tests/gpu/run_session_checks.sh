#!/usr/bin/env bash
# One device call (2 GPUs, <= 10 min) for a session's GPU checks: kernels in bf16; engine vs transformers
# (tiny dense with CUDA graphs, DeepSeek-V2-Lite-shaped MLA+MoE with DP attention, ~1B dense); benchmark.
# Each part has its own time limit so that one slow part cannot eat the whole call; most important first.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
part kernels 100 python3 -m pytest -q -x tests/kernels
tail -2 "$OUT/kernels.txt"
part tiny 90 python3 tests/gpu/check_vs_transformers.py --model tiny --layouts 1x1 2x1 1x2 --out /tmp/chk
grep -E "RESULT|Error" "$OUT/tiny.txt"
grep -h "captured" /tmp/chk/*.run/rank0.log 2>/dev/null | tail -1
part dsv2lite 130 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 1x1 2x1 --num-prompts 8 \
  --out /tmp/chk --extra parallel.dp_attention=true model.max_model_len=4096
grep -E "RESULT|OUTSIDE|Error" "$OUT/dsv2lite.txt" | head
part bench_decode 110 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode 'bench.batch_sizes=[1,64]' \
  bench.context=1024 bench.output=$OUT/bench_decode.json
tail -12 "$OUT/bench_decode.txt"
part onebill 80 python3 tests/gpu/check_vs_transformers.py --model 1b --layouts 1x1 --out /tmp/chk
grep -E "RESULT|OUTSIDE" "$OUT/onebill.txt"
part bench_prefill 60 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=grid 'bench.grid_batch_sizes=[8]' \
  'bench.input_lens=[2048]' 'bench.output_lens=[1]' scheduler.max_num_batched_tokens=16384 bench.output=$OUT/bench_prefill.json
tail -8 "$OUT/bench_prefill.txt"
