#!/usr/bin/env bash
# One 2-GPU device call (~4 min), session 20: issue 4's Qwen3-8B dp target (dp4 >= 3.6x dp1, measured 1.96x: every
# decoupled DP rank reads all the weights every step) asks whether DP attention helps a dense model: attention and
# its KV per DP rank, the MLP (78% of Qwen3-8B's layer weights) sharded over every rank, so a rank reads a quarter of
# the MLP at dp4 (half at dp2) for two collectives a layer. On two GPUs: nano-vllm protocol dp1 (one GPU), dp2
# decoupled, dp2 with DP attention, each case's JSON kept (cases[].dp_ranks: each DP rank's own work and idle steps,
# what the `wait` column waits on). Session 20 (2 x H200): dp1 9.9k, dp2 14.9k (1.50x; rank 0 waited 21.8% of its
# steps), dp2 + DP attention 13.4k output tok/s; dp2 again 14.5k, own work 6.54 / 7.98 s, decode MBU 73.8% against
# dp1's 74.5%: the GPUs do not idle on the lockstep. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
# nano8 NAME LAUNCHER... -- OVERRIDE...: the protocol under a launcher (python3, or torchrun over both GPUs).
nano8() {
  local name=$1 launch=(); shift
  while (($#)) && [[ $1 != -- ]]; do launch+=("$1"); shift; done
  (($#)) && shift
  part "$name" 100 "${launch[@]}" -m spmd_infer.bench bench.preset=qwen3-8b bench.workload=nano_vllm \
    bench.output="$OUT/$name.json" "$@"
  grep -E "^nano_vllm|Error" "$OUT/$name.txt" | cut -c1-120
}
# CASES="dp2": one of them (default all three).
for case in ${CASES:-dp2_dpa dp2 dp1}; do
  case $case in
    dp2_dpa) nano8 dp2_dpa torchrun --nproc-per-node 2 -- parallel.dp=2 parallel.dp_attention=true ;;
    dp2) nano8 dp2 torchrun --nproc-per-node 2 -- parallel.dp=2 ;;
    dp1) nano8 dp1 python3 ;;
  esac
done
grep -h "DP ranks" "$OUT"/*.txt | cut -c1-140
rm -rf "$OUT"/*.run
