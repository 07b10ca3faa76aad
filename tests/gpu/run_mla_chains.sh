#!/usr/bin/env bash
# One 1-GPU device call (~5 min), session 14: MLA decode with the latent dimension in two halves, each its own dot
# and accumulator (the score dot was one chain of 36 dependent mma.sync a warp, ncu's top stall 'wait'). The MLA
# kernel tests, the launch-config sweep over a bf16 and a float8 latent cache (default split policy), then
# DeepSeek-V2-Lite decode at bs256 / bs64 @1k (bf16 latent cache: 14.4 ms / 11.6 ms a step before). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part mla_tests 120 tests/kernels/test_mla_decode.py tests/kernels/test_fp8_kv.py tests/test_mla_triton_path.py
for kv in bf16 fp8; do
  part "tune_$kv" 150 python3 tests/gpu/tune_mla_decode.py $([[ $kv == fp8 ]] && echo --fp8) --default-splits \
    --shapes bs256 bs64 bs32 bs1
  grep -A8 "^best over" "$OUT/tune_$kv.txt"; grep -E "\(default\)" "$OUT/tune_$kv.txt" | sort -u | head -4
done
part decode_bf16 100 python3 -m spmd_infer.bench bench.preset=deepseek-v2-lite bench.workload=decode \
  'bench.batch_sizes=[256,64]' bench.context=1024 bench.output=$OUT/decode_bf16.json
grep -E "^decode bs|Error" "$OUT/decode_bf16.txt" | cut -c1-110
rm -rf "$OUT"/*.run "$OUT"/*.json
