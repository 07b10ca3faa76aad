#!/usr/bin/env bash
# Checks and figures for the MoE routing kernels (moe_align.py), the MLA decode tiles and the medium/large MoE tiles
# on a 2-GPU host (~6 min): bf16 kernel tests and the fused-MoE sweep (routing time: Triton vs torch) on GPU 0;
# DeepSeek-V2-Lite vs transformers 1x1 and a profiled 1x1 bs256 decode on GPU 1; then dp2 + DP attention, both.
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
ds() { local name=$1 n=$2; shift 2; part "$name" 150 torchrun --nproc-per-node "$n" -m spmd_infer.bench \
  bench.preset=deepseek-v2-lite bench.workload=decode bench.context=1024 bench.decode_steps=32 bench.profile=true \
  bench.profile_top=12 bench.output=$OUT/$name.json "$@"; }
show() { grep -A17 "^case " "$OUT/$1.txt" | grep -v "^results" | head -18; grep -h "Error" "$OUT/$1.txt" | tail -2; }
( export CUDA_VISIBLE_DEVICES=0
  part kernels 200 python3 -m pytest -q tests/kernels/test_fused_moe.py tests/kernels/test_mla_decode.py \
    tests/kernels/test_jit_variants.py
  part tune_moe 200 python3 tests/gpu/tune_fused_moe.py ) &
( export CUDA_VISIBLE_DEVICES=1
  part ds_check_1x1 150 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 1x1 --out /tmp/chk1
  ds ds_1x1 1 'bench.batch_sizes=[256]' scheduler.max_num_seqs=256 ) &
wait
echo "--- kernels"; tail -1 "$OUT/kernels.txt"; grep -hE "^FAILED" "$OUT/kernels.txt" | head
grep -hE "RESULT|OUTSIDE|Error" "$OUT/ds_check_1x1.txt" | head -3
show ds_1x1
grep -E "^dsv2|^qwen3|^ +[0-9]" "$OUT/tune_moe.txt" | head -40
part ds_check_dp2 150 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 2x1 --out /tmp/chk2 \
  --extra parallel.dp_attention=true
grep -hE "RESULT|OUTSIDE|Error" "$OUT/ds_check_dp2.txt" | head -3
ds ds_dp2 2 'bench.batch_sizes=[512]' parallel.dp=2 parallel.dp_attention=true scheduler.max_num_seqs=256
show ds_dp2
rm -rf "$OUT"/*.run  # run dirs: too many files for the device tool to bring back
