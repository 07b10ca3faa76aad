#!/usr/bin/env bash
# One GPU (~3 min), session 8: the issue-4 decode figures with the current defaults (rotary + KV store in the qkv
# projection's epilogue), Llama-3-8B bs1 and bs64 @1k three times in one launch (bench.repeats=3), and where bs1's
# time now goes (bench.profile=true, the 30 heaviest kernels; with PDL on each kernel's time includes its wait on
# the one before, so SPMD_PDL=0 attributes better), to choose the next step toward 85% MBU from what runs.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part decode 90 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
  'bench.batch_sizes=[64,1]' bench.context=1024 bench.repeats=3 bench.output=$OUT/decode.json
grep -E "^device|^decode bs|runs:" "$OUT/decode.txt" | cut -c1-140
part bs1_profile 110 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
  'bench.batch_sizes=[1]' bench.context=1024 bench.profile=true bench.profile_top=30 \
  bench.output=$OUT/bs1_profile.json
grep -A32 "^profile of" "$OUT/bs1_profile.txt"
rm -rf "$OUT"/*.run "$OUT"/*.json
