#!/usr/bin/env bash
# One 1-GPU device call (~6 min): session 12's float8 defaults (the wide tiles widened by e4m3_to_f16, (128, 4, 3) for
# one split) against session 11's (SPMD_DECODE_FP8_ASM_WIDEN=none, one split on (64, 2, 6)): the float8 and decode
# kernel tests in bf16, nano-vllm fp8 end to end under both; then the sampling and scoring features' jobs
# (tests/test_sampling_extras.py: penalties, logit_bias, prompt_logprobs, echo, n) through the CUDA path in float32
# against their float32 transformers references. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
part kernels 200 python3 -m pytest -q -n 8 tests/kernels/test_fp8_kv.py tests/kernels/test_decode_attention.py
tail -2 "$OUT/kernels.txt"; grep -E "^FAILED" "$OUT/kernels.txt" | head
nano_part nano_fp8_new -- cache.dtype=fp8
nano_part nano_fp8_old SPMD_DECODE_FP8_ASM_WIDEN=none SPMD_DECODE_FP8_CONFIGS="64,2,6 32,1,6" -- cache.dtype=fp8
nano_part nano_fp8_new2 -- cache.dtype=fp8
part sampling 200 env SPMD_TEST_GPU=1 SPMD_TEST_OVERRIDES=model.dtype=float32 python3 -m pytest -q tests/test_sampling_extras.py
tail -3 "$OUT/sampling.txt"; grep -E "^FAILED|^E " "$OUT/sampling.txt" | head -20
rm -rf "$OUT"/*.run "$OUT"/*.json
