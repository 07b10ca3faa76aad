#!/usr/bin/env bash
# run_moe_profile.sh for a 2-GPU host (~8 min): the fused-MoE tile sweep on GPU 0 (after the fp8 store and rotary
# kernel tests in bf16), Qwen3-0.6B nano-vllm with the fp8 cache and DeepSeek-V2-Lite 1x1 decode profiled on GPU 1;
# then DeepSeek-V2-Lite decode profiled at dp2 + DP attention and at tp2 (where the MoE decode time goes).
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
ds() { local name=$1 n=$2; shift 2; part "$name" 150 torchrun --nproc-per-node "$n" -m spmd_infer.bench \
  bench.preset=deepseek-v2-lite bench.workload=decode bench.context=1024 bench.decode_steps=32 bench.profile=true \
  bench.profile_top=15 bench.output=$OUT/$name.json "$@"; }
show() { grep -A20 "^case " "$OUT/$1.txt" | grep -v "^results" | head -21; grep -h "Error" "$OUT/$1.txt" | tail -2; }
( export CUDA_VISIBLE_DEVICES=0
  part kernels 150 python3 -m pytest -q tests/kernels/test_fp8_kv.py tests/kernels/test_kv_store.py tests/kernels/test_rotary.py
  part tune_moe 240 python3 tests/gpu/tune_fused_moe.py ) &
( export CUDA_VISIBLE_DEVICES=1
  part qwen_nano_fp8 90 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=nano_vllm \
    cache.dtype=fp8 bench.output=$OUT/qwen_nano_fp8.json
  ds ds_1x1 1 'bench.batch_sizes=[256]' scheduler.max_num_seqs=256 ) &
wait
echo "--- kernels"; tail -1 "$OUT/kernels.txt"; grep -hE "^FAILED" "$OUT/kernels.txt" | head
echo "--- qwen_nano_fp8"; tail -5 "$OUT/qwen_nano_fp8.txt"
show ds_1x1
tail -45 "$OUT/tune_moe.txt"
ds ds_dp2 2 'bench.batch_sizes=[512]' parallel.dp=2 parallel.dp_attention=true scheduler.max_num_seqs=256
show ds_dp2
ds ds_tp2 2 'bench.batch_sizes=[512]' parallel.tp=2 scheduler.max_num_seqs=512
show ds_tp2
rm -rf "$OUT"/*.run  # run dirs: too many files for the device tool to bring back
