#!/usr/bin/env bash
# One 1-GPU device call (<= 10 min, meant for an H100): every kernel and the MLA CUDA path against their
# references in bf16; DeepSeek-V2-Lite-shaped MLA+MoE (graphed) vs transformers; then the issue-4 benchmark
# figures: Llama-3-8B decode bs1/bs64 @1k (three runs in one launch: the median and every run), prefill 8 x 2048,
# startup from a page-cached safetensors checkpoint. The Qwen3-0.6B nano-vllm protocol against transformers
# generate is the next call, run_h100_nano.sh (its transformers half alone takes minutes). Carry [".whl"]
# (tests/gpu/fetch_wheels.sh): Hydra, and pytest-xdist so that the kernel suite compiles on 12 workers (one process
# got through a quarter of it in 220 s on an H200).
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
table() { grep -A12 "^model " "$OUT/$1.txt" | grep -v "^results"; }
part kernels 150 python3 -m pytest -q -n 12 tests/kernels tests/test_mla_triton_path.py
tail -3 "$OUT/kernels.txt"; grep -E "^FAILED" "$OUT/kernels.txt" | head
part dsv2 90 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 1x1 --num-prompts 8 --out /tmp/chk \
  --extra model.max_model_len=4096
grep -E "RESULT|OUTSIDE|Error|captured" "$OUT/dsv2.txt" /tmp/chk/*.run/rank0.log 2>/dev/null | grep -v "^$" | head -5
part llama_decode 120 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode 'bench.batch_sizes=[64,1]' \
  bench.context=1024 bench.repeats=3 bench.output=$OUT/llama_decode.json
grep -A30 "^model " "$OUT/llama_decode.txt" | grep -v "^results"
part llama_prefill 110 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=grid 'bench.grid_batch_sizes=[8]' \
  'bench.input_lens=[2048]' 'bench.output_lens=[1]' scheduler.max_num_batched_tokens=16384 bench.load=true \
  bench.checkpoint_dir=/tmp/llama_ckpt bench.output=$OUT/llama_prefill.json
table llama_prefill
# The checkpoint written above is in the page cache now: this start reads it through the real loader.
part llama_startup 60 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode 'bench.batch_sizes=[1]' \
  bench.decode_steps=4 bench.context=128 model.path=/tmp/llama_ckpt bench.load=true bench.output=$OUT/llama_startup.json
table llama_startup | head -3
rm -rf /tmp/llama_ckpt
