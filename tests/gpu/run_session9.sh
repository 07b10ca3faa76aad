#!/usr/bin/env bash
# One GPU (~9 min), the first call of session 9, checking what session 8 committed after its device time ran out:
# - the whole kernel suite in bf16 (12 pytest-xdist workers), which now holds the sampler's one-variant-for-any-
#   batch-size test (test_jit_variants.py) and runs the split-KV helper refactor of decode attention and MLA decode;
# - Llama-3-8B decode bs64 / bs1 @1k, three runs in one launch (bench.repeats=3): unchanged by the refactor?
#   (session 8: bs1 4.5 ms, 81.3-85.3% MBU; bs64 7.3-7.4 ms, 77.8-79.0%);
# - Qwen3-0.6B nano-vllm protocol twice in one launch on this fresh machine: with the sampler's chunk count a
#   runtime argument, the first run should no longer compile kernels mid-run (session 7: first case 18.8k against
#   24.7k tok/s) and no "compiled during the timed case" warning should appear.
# Carry [".whl"] after tests/gpu/fetch_wheels.sh.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part kernel_suite 300 python3 -m pytest -q -n 12 tests/kernels tests/test_mla_triton_path.py
tail -2 "$OUT/kernel_suite.txt"; grep -E "^FAILED|^ERROR" "$OUT/kernel_suite.txt" | head -10
part decode 90 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
  'bench.batch_sizes=[64,1]' bench.context=1024 bench.repeats=3 bench.output=$OUT/decode.json
grep -E "^device|^decode bs|runs:|compiled during" "$OUT/decode.txt" | cut -c1-160
part nano 150 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=nano_vllm bench.repeats=2 \
  bench.output=$OUT/nano.json
grep -E "^device|^nano_vllm|runs:|compiled during" "$OUT/nano.txt" | cut -c1-160
rm -rf "$OUT"/*.run "$OUT"/*.json
