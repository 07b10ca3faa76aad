#!/usr/bin/env bash
# One 1-GPU device call (~4.5 min): rows with top_p alone (Llama-3's default) take torch.topk's 1024 candidates and,
# where their kept set runs past them, a search over the row (top_p_floor, now tail_floor: 16 splits a pass, 9
# passes; a plain
# bisection's 32 passes made Llama-3-8B bs256 19.7 ms and bs64 9.9), instead of a full sort (session 23;
# before, on an H200 at 256 rows x 152k vocabulary: 5.2 ms GPU per sampling call, the sort 2.7 of it; Llama-3-8B
# decode bs256 @1k 18.5 ms a step with top_p 0.9 against 16.1 greedy). The sampler's and penalties' kernel tests on
# the card, the sampler's parts alone, then decode with top_p 0.9: Llama-3-8B and Qwen3-0.6B (random weights give
# flat rows, whose sets run past the candidates: the bisection's worst case). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
test_part tests 200 tests/kernels/test_penalties.py tests/kernels/test_sampling.py tests/test_sampler_filters.py \
  tests/test_penalty_state.py
part micro 150 python3 tests/gpu/bench_sampler.py --batches 64,256
grep -v Warning "$OUT/micro.txt" | grep -v torch. | head -30
decode_part llama3_8b llama-3-8b -- sampling.temperature=0.6 sampling.top_p=0.9
grep -E "compiled during" "$OUT/llama3_8b.txt" | head -3
decode_part qwen3_flat qwen3-0.6b -- sampling.temperature=0.6 sampling.top_p=0.9
grep -E "compiled during" "$OUT/qwen3_flat.txt" | head -3
rm -rf "$OUT"/*.json "$OUT"/*.run
