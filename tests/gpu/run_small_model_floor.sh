#!/usr/bin/env bash
# One 1-GPU device call (~2 min): the per-step floor of a small model's decode, which the nano-vllm protocol's tail
# pays on every one of its ~1020 steps (mean batch 141 of 256): Qwen3-0.6B decode @600 (about the protocol's mean
# context) at batches 256 / 64 / 16 / 1, bf16 and fp8 KV cache, and bs1's heaviest kernels (bench.profile);
# BATCHES="64 256": a bf16-cache profile at each of those batches instead. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
if [[ -n ${BATCHES:-} ]]; then
  for bs in $BATCHES; do
    part "prof_$bs" 100 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=decode \
      "bench.batch_sizes=[$bs]" bench.context=600 bench.profile=true bench.profile_top=16 bench.output="$OUT/prof_$bs.json"
    echo "--- bs$bs"; grep -A18 "^profile of" "$OUT/prof_$bs.txt" | cut -c1-150
  done
  rm -rf "$OUT"/*.json "$OUT"/*.run
  exit 0
fi
for kv in auto fp8; do
  part "floor_$kv" 120 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=decode \
    'bench.batch_sizes=[256,64,16,1]' bench.context=600 cache.dtype=$kv bench.profile=true bench.profile_top=16 \
    bench.output="$OUT/floor_$kv.json"
  echo "--- cache $kv"; grep -E "^decode bs|Error" "$OUT/floor_$kv.txt" | cut -c1-110
  grep -A18 "^profile of" "$OUT/floor_$kv.txt" | cut -c1-150
done
rm -rf "$OUT"/*.json "$OUT"/*.run
