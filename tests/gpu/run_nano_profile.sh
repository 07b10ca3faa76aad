#!/usr/bin/env bash
# One GPU (~3 min), session 9: where the Qwen3-0.6B nano-vllm case's decode step goes (bench.profile=true, the 30
# heaviest kernels), with the bf16 and the fp8 cache. The step is 5.8 ms against ~3.8 ms of weight and KV bytes at
# the copy rate, and the fp8 cache (half the KV bytes) gained only 8% (README), so the time is not all KV reads.
# Measured (session 9, H200): bf16 cache 5.51 ms a step, _decode_split_kernel 4.08 ms of it (75.5%): ~14.6 GB of KV
# a step, so 3.6 TB/s, 85% of the 4.2 TB/s copy rate. fp8 cache 5.09 ms, the split kernel 3.57 ms for half the
# bytes (2.0 TB/s): decode attention over float8 is bound by the conversion and the dots, not the reads. The rest
# of the step: decode reduce 116 us, RMSNorm 107 us, KV store 87 us + q/k norm-rotary 80 us (now one kernel),
# SiLU 45 us, sampler 31 us, cuBLAS GEMMs ~0.6 ms.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
for kv in ${KVS:-auto fp8}; do  # KVS=fp8 for one cache
  part nano_$kv 150 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=nano_vllm cache.dtype=$kv \
    bench.profile=true bench.profile_top=30 bench.output=$OUT/nano_$kv.json
  grep -E "^nano_vllm|compiled during" "$OUT/nano_$kv.txt" | cut -c1-150; grep -A34 "^profile of" "$OUT/nano_$kv.txt"
done
rm -rf "$OUT"/*.run "$OUT"/*.json
