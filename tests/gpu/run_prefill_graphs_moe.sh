#!/usr/bin/env bash
# One 1-GPU device call (~6 min), written in session 27 without a GPU left to run it: MoE layers in prefill CUDA
# graphs (SPMD_PREFILL_GRAPHS_MOE=1). The tiny Qwen3-MoE and Mixtral jobs through graphs against eager, Qwen3-MoE
# against transformers with the switch, then Qwen3-30B-A3B prefill TTFT on / off at step sizes where its host's
# launches should dominate (8 x 64, 64 x 128, 256 x 512: 512, 8192 and 8192-token steps; the layer-work rule
# captures its buckets up to ~4096 tokens). If all agree and the small steps gain, flip the switch's default.
# Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
part tests 200 python3 -m pytest -q -n 6 --tb=line tests/test_prefill_graphs.py -k "moe or MoE"
tail -1 "$OUT/tests.txt"; grep -E "^E |Error|assert" "$OUT/tests.txt" | head -12 | cut -c1-300
check_part 240 SPMD_PREFILL_GRAPHS_MOE=1 --model qwen3moe --layouts 1x1
for moe in 1 0; do
  part "moe_$moe" 200 env SPMD_PREFILL_GRAPHS_MOE=$moe python3 -m spmd_infer.bench bench.preset=qwen3-30b-a3b \
    bench.workload=grid 'bench.grid_batch_sizes=[8,64,256]' 'bench.input_lens=[64,128,512]' 'bench.output_lens=[1]' \
    bench.repeats=2 bench.output="$OUT/moe_$moe.json"
  echo "qwen3-30b-a3b SPMD_PREFILL_GRAPHS_MOE=$moe"
  grep -E "^grid (8x64|64x128|256x512)|prefill CUDA|eagerly|Error" "$OUT/moe_$moe.txt" | cut -c1-160
done
rm -rf "$OUT"/*.run "$OUT"/*.json
