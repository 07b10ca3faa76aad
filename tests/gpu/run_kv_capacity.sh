#!/usr/bin/env bash
# bf16 GPU tests of the MoE/MLA/sampling kernels, then DeepSeek-V2-Lite (full config, random weights) KV
# capacity with DP attention (dp=NGPU) vs TP (tp=NGPU): the logged tokens summed over DP groups.
set -uo pipefail
source tests/gpu/device_env.sh
OUT=${OUT:-/tmp/out}; N=${NGPU:-2}
[ -n "${SKIP_KERNELS:-}" ] || timeout 70 python3 -m pytest -q tests/kernels/test_fused_moe.py tests/kernels/test_mla_decode.py tests/kernels/test_sampling.py 2>&1 | tail -2
# max_model_len at the model's limit, so that "every slot full" never caps the count: memory decides.
i=0
for layout in "parallel.dp=$N parallel.dp_attention=true" "parallel.tp=$N"; do
  i=$((i+1))
  timeout 60 torchrun --nproc-per-node $N -m spmd_infer.bench bench.preset=deepseek-v2-lite bench.workload=decode \
    'bench.batch_sizes=[1]' bench.context=16 runtime.cuda_graphs=false model.max_model_len=163840 $layout \
    bench.output=/tmp/kv$i.json > $OUT/kv$i.txt 2>&1
  echo "$layout: rc=$? $(grep -h 'KV cache:' $OUT/kv$i.txt | head -1)"
done
