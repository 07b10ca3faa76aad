#!/usr/bin/env bash
# One GPU (~6 min): where Llama-3-8B bs1 @1k decode time goes, with the three launch savings off and on
# (bench.profile=true, 30 heaviest kernels), and the bf16 tests of the kernels those savings change
# (decode attention with the fused combine, rotary + KV store, PDL) with all three on.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
for flags in 0 1; do
  export SPMD_PDL=$flags SPMD_DECODE_FUSED_REDUCE=$flags SPMD_ROTARY_STORE_KV=$flags
  part bs1_profile_$flags 110 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
    'bench.batch_sizes=[1]' bench.context=1024 bench.profile=true bench.profile_top=30 \
    bench.output=$OUT/bs1_profile_$flags.json
  grep -A32 "^profile of" "$OUT/bs1_profile_$flags.txt"
done
export SPMD_PDL=1 SPMD_DECODE_FUSED_REDUCE=1 SPMD_ROTARY_STORE_KV=1
part kernel_tests 200 python3 -m pytest -q -x tests/kernels/test_decode_attention.py \
  tests/kernels/test_rotary_store_kv.py tests/kernels/test_pdl.py tests/kernels/test_kv_store.py
tail -2 "$OUT/kernel_tests.txt"; grep -E "^FAILED|^E " "$OUT/kernel_tests.txt" | head -6
rm -rf "$OUT"/*.run
