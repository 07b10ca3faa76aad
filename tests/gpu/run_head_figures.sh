#!/usr/bin/env bash
# One 1-GPU device call (~5 min): issue 4's single-GPU figures at the current HEAD, for a closing note: Llama-3-8B
# bf16 decode @1k bs1 and bs64 three times in one launch, prefill 8 x 2048 (MFU), and Qwen3-0.6B on the nano-vllm
# protocol with the bf16 and the fp8 KV cache, each case's JSON kept (wall, prefill seconds, decode steps and MBU:
# where the run's time goes). PROFILE=1: then where Llama-3-8B bs1's step goes (bench.profile, the 30 heaviest
# kernels; with PDL on a kernel's time includes its wait on the one before: SPMD_PDL=0 attributes better). Carry
# [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part decode 100 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
  'bench.batch_sizes=[64,1]' bench.context=1024 bench.repeats=3 bench.output=$OUT/decode.json
grep -E "^device|^decode bs|runs:" "$OUT/decode.txt" | cut -c1-140
part prefill 80 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=grid 'bench.grid_batch_sizes=[8]' \
  'bench.input_lens=[2048]' 'bench.output_lens=[1]' scheduler.max_num_batched_tokens=16384 \
  bench.output=$OUT/prefill.json
grep -E "^grid" "$OUT/prefill.txt" | cut -c1-140
for kv in auto fp8; do
  nano_part "nano_$kv" -- cache.dtype=$kv
  nano_summary "nano_$kv"
done
if [[ ${PROFILE:-0} == 1 ]]; then
  part bs1_profile 110 python3 -m spmd_infer.bench bench.preset=llama-3-8b bench.workload=decode \
    'bench.batch_sizes=[1]' bench.context=1024 bench.profile=true bench.profile_top=30 \
    bench.output=$OUT/bs1_profile.json
  grep -A32 "^profile of" "$OUT/bs1_profile.txt"
fi
rm -rf "$OUT"/*.run
