#!/usr/bin/env bash
# One 1-GPU device call (~4 min), session 20: SPMD_FP8_QKV_ROPE made Llama-3-8B's float8 decode slower at bs64
# (7.6 against 6.2 ms) and bs16 (4.3 against 4.0), not at bs1 (3.0 both; run_fp8_qkv_rope.sh). Where the time goes:
# the float8 qkv kernel tests (the test's empty-batch and one-ulp mends), then bs64 and bs16 decode under
# bench.profile with the switch on and off, the heaviest kernels listed. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 120 tests/kernels/test_qkv_rope_store.py
for bs in 64 16; do
  for on in 1 0; do
    part "prof${bs}_$on" 90 env SPMD_FP8_QKV_ROPE=$on python3 -m spmd_infer.bench bench.preset=llama-3-8b \
      bench.workload=decode "bench.batch_sizes=[$bs]" bench.context=1024 model.linear_dtype=fp8 bench.profile=true \
      bench.profile_top=12 bench.output="$OUT/prof${bs}_$on.json"
    echo "--- bs$bs SPMD_FP8_QKV_ROPE=$on"; grep -E "^decode bs|Error" "$OUT/prof${bs}_$on.txt" | cut -c1-110
    grep -A14 "^profile of" "$OUT/prof${bs}_$on.txt" | cut -c1-160
  done
done
rm -rf "$OUT"/*.json "$OUT"/*.run
