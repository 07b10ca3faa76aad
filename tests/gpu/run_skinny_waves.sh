#!/usr/bin/env bash
# One 1-GPU device call (~5 min): SPMD_SKINNY_SPLIT's split count for Qwen3-0.6B's small projections. In
# run_skinny_split.sh two waves of programs (qkv and gate_up split 2, o 4, down 6) decoded bs1 in 1.1 ms against
# cuBLAS's 1.4; in run_skinny_split_on.sh, on another H200, one wave (qkv and gate_up unsplit, o and down 4: the
# kernel alone's best) 1.4 against 1.4. Qwen3-0.6B decode @600 bs1 / bs16 with one wave (the tree), two waves
# (skinny_two_waves.patch) and cuBLAS (SPMD_SKINNY_SPLIT=0), interleaved twice on one card, then bs1 profiles of
# the two. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
two=$(patched_kernels two_waves tests/gpu/skinny_two_waves.patch)
qwen=(python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=decode 'bench.batch_sizes=[16,1]'
      bench.context=600 bench.repeats=3)
show() { echo "--- $1"; grep -E "^decode bs|Error|runs:" "$OUT/$1.txt" | cut -c1-130; }
for pass in 1 2; do
  part "one$pass" 90 "${qwen[@]}" bench.output="$OUT/one$pass.json"; show "one$pass"
  part "two$pass" 90 env PYTHONPATH="$two" "${qwen[@]}" bench.output="$OUT/two$pass.json"; show "two$pass"
  part "off$pass" 90 env SPMD_SKINNY_SPLIT=0 "${qwen[@]}" bench.output="$OUT/off$pass.json"; show "off$pass"
done
prof=(bench.batch_sizes=[1] bench.repeats=1 bench.profile=true bench.profile_top=12)
part prof_one 120 "${qwen[@]}" "${prof[@]}" bench.output="$OUT/prof_one.json"
part prof_two 120 env PYTHONPATH="$two" "${qwen[@]}" "${prof[@]}" bench.output="$OUT/prof_two.json"
for p in prof_one prof_two; do echo "--- $p"; grep -A14 "^profile of" "$OUT/$p.txt" | cut -c1-150; done
rm -rf "$OUT"/*.json "$OUT"/*.run
