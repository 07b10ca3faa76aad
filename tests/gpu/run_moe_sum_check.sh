#!/usr/bin/env bash
# One GPU (~2 min): the fused MoE without its zero fill and torch's k-sum (_moe_sum_kernel) -- bf16 kernel tests,
# then DeepSeek-V2-Lite 1x1 decode at bs256 @1k profiled (was 14.7 ms/step with the fill and the torch sum).
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part kernels 100 python3 -m pytest -q tests/kernels/test_fused_moe.py
tail -1 "$OUT/kernels.txt"; grep -hE "^FAILED" "$OUT/kernels.txt" | head
part ds_1x1 120 python3 -m spmd_infer.bench bench.preset=deepseek-v2-lite bench.workload=decode bench.context=1024 \
  bench.decode_steps=32 'bench.batch_sizes=[256]' scheduler.max_num_seqs=256 bench.profile=true bench.profile_top=14 \
  bench.output=$OUT/ds_1x1.json
grep -A17 "^case " "$OUT/ds_1x1.txt" | grep -v "^results" | head -18; grep -h "Error" "$OUT/ds_1x1.txt" | tail -2
rm -rf "$OUT"/*.run  # run dirs: too many files for the device tool to bring back
