#!/usr/bin/env bash
# One 4-GPU device call (~8 min): sweep decode attention's launch config and split policy inside CUDA graphs
# (tests/gpu/tune_decode_attention.py), then rerun the decode-heavy benchmarks with the best setting through the
# SPMD_DECODE_* variables: Llama-3-8B decode bs1/bs64 @1k (profiled), Qwen3-0.6B nano-vllm, Qwen3-8B nano-vllm dp4.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
rows() { grep -A16 "^case " "$OUT/$1.txt" | grep -v "^results"; grep -h "compiled during" "$OUT/$1.txt" | tail -2; }
CUDA_VISIBLE_DEVICES=0 part tune_decode 180 python3 tests/gpu/tune_decode_attention.py --json "$OUT/best.json"
tail -45 "$OUT/tune_decode.txt"
if [ -s "$OUT/best.json" ]; then
  eval "$(python3 -c "import json; d=json.load(open('$OUT/best.json')); print(' '.join(f'export {k}={v}' for k, v in d.items() if k.startswith('SPMD')))")"
fi
env | grep SPMD_DECODE
part llama_decode 90 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
  'bench.batch_sizes=[1,64]' bench.context=1024 bench.profile=true bench.profile_top=6 bench.output=$OUT/llama_decode.json
rows llama_decode
part qwen_nano 70 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=nano_vllm bench.output=$OUT/qwen_nano.json
rows qwen_nano
part qwen8_dp4 100 torchrun --nproc-per-node 4 -m spmd_infer.bench bench.preset=qwen3-8b bench.workload=nano_vllm \
  parallel.dp=4 bench.output=$OUT/qwen8_dp4.json
rows qwen8_dp4
