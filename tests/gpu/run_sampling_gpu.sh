#!/usr/bin/env bash
# One 1-GPU device call (~2 min): the sampling and scoring features' jobs (tests/test_sampling_extras.py: repetition,
# presence and frequency penalties, logit_bias, prompt_logprobs with chunked prefill, shared prefixes and preemption,
# echo, n > 1, generation_config defaults, OpenAI batch files) through the CUDA path (Triton kernels, CUDA graphs) in
# float32, against the test's float32 transformers references; and the decode / MLA kernel tests (head_dim 8, the
# tiny models', below tl.dot's 16 on CUDA: the jobs failed to compile there before session 12). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
part kernels 150 python3 -m pytest -q -n 8 tests/kernels/test_decode_attention.py tests/kernels/test_mla_decode.py
tail -2 "$OUT/kernels.txt"; grep -E "^FAILED" "$OUT/kernels.txt" | head
part sampling 300 env SPMD_TEST_GPU=1 SPMD_TEST_OVERRIDES=model.dtype=float32 python3 -m pytest -q tests/test_sampling_extras.py
tail -3 "$OUT/sampling.txt"; grep -E "^FAILED|^ERROR|^E  .*(Error|assert)" "$OUT/sampling.txt" | cut -c1-200 | head -20
