#!/usr/bin/env bash
# One 1-GPU device call for an H100 (<= 10 min): the whole bf16 kernel suite and the MLA CUDA-path tests
# (the last H100 call ran out of its part limit at ~45%), then Llama-3-8B decode bs1/bs64 @1k with the
# split-KV minimum at its default (256 tokens) and at 64, to settle the small-batch split count.
set -uo pipefail
source tests/gpu/device_env.sh
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
part() { local name=$1 limit=$2; shift 2; echo "=== $name"; timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1; echo "rc=$?"; }
part kernels 330 python3 -m pytest -q tests/kernels tests/test_mla_triton_path.py
tail -3 "$OUT/kernels.txt"; grep -E "^FAILED" "$OUT/kernels.txt" | head
for split in 256 64; do
  export SPMD_DECODE_MIN_SPLIT_TOKENS=$split
  part llama_split$split 100 python3 -m spmd_infer.bench bench.preset=llama-3-8b \
    bench.workload=decode 'bench.batch_sizes=[64,1]' bench.context=1024 bench.profile=true bench.profile_top=6 \
    bench.output=$OUT/llama_split$split.json
  grep -A14 "^case " "$OUT/llama_split$split.txt" | grep -v "^results"
done
