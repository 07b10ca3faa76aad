#!/usr/bin/env bash
# One 1-GPU device call (~7 min), session 14, after run_mla_fp8_tune.sh: the float8 MLA tests with the pinned /
# unpinned comparison relaxed to bf16 rounding (one to three of 24576 outputs differed by a bf16 unit), DeepSeek-V2-Lite
# decode at bs256 / bs64 @1k with a float8 latent cache on the new CUDA_CONFIG_FP8 tile (16, (32, 64), 4, 1) against
# bf16, then MLA decode's longest-first program order (session 13, untimed) on the nano-vllm workload, on and off,
# twice each, interleaved. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part fp8_tests 120 tests/kernels/test_fp8_kv.py tests/kernels/test_mla_decode.py
for kv in fp8 auto; do
  part "decode_$kv" 100 python3 -m spmd_infer.bench bench.preset=deepseek-v2-lite bench.workload=decode \
    'bench.batch_sizes=[256,64]' bench.context=1024 cache.dtype=$kv bench.output=$OUT/decode_$kv.json
  echo "--- latent cache $kv"; grep -E "^decode bs|Error" "$OUT/decode_$kv.txt" | cut -c1-110
done
for run in 1a 0a 1b 0b; do
  lf=${run:0:1}
  part "nano_lf$run" 100 env SPMD_DECODE_LONGEST_FIRST=$lf python3 -m spmd_infer.bench \
    bench.preset=deepseek-v2-lite bench.workload=nano_vllm bench.output=$OUT/nano_lf$run.json
  echo "--- DeepSeek-V2-Lite nano-vllm, longest first $lf"; grep -E "^nano_vllm|Error" "$OUT/nano_lf$run.txt" | cut -c1-150
done
rm -rf "$OUT"/*.run "$OUT"/*.json
