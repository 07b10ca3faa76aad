#!/usr/bin/env bash
# One GPU (~7 min): Qwen3's q/k norms, rotary and KV store in the qkv projection's skinny_gemm epilogue at decode
# (SPMD_QKV_NORM_ROPE=1, kernels/qkv_rope_store.py with RopeStore.q_norm), each program holding one whole head, so
# Qwen3-8B's qkv streams through 48 programs instead of 96. Llama's rotary epilogue gained 4.7 -> 4.5 ms at bs1;
# Qwen3-8B bs1 was 4.9 ms, 76.2-76.6% MBU in session 9 (run_session9b.sh).
# - the bf16 tests of the epilogue (with and without the norm);
# - Qwen3 vs transformers with it on (SPMD_SKINNY_MIN_MB=1 sends the small checking model's qkv through skinny_gemm);
# - Qwen3-8B decode bs1 / bs16 @1k: off, and on with three tiles (SPMD_QKV_NORM_CONFIG=BLOCK_K,warps,stages).
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
part kernels 90 python3 -m pytest -q -n 8 tests/kernels/test_qkv_rope_store.py
tail -1 "$OUT/kernels.txt"; grep -E "^FAILED|^E " "$OUT/kernels.txt" | head -4
part check_qwen3 120 env SPMD_QKV_NORM_ROPE=1 SPMD_SKINNY_MIN_MB=1 python3 tests/gpu/check_vs_transformers.py \
  --model qwen3 --layouts 1x1 --num-prompts 8 --out /tmp/chk_qwen3
grep -E "RESULT|OUTSIDE|Error" "$OUT/check_qwen3.txt" | head -3
bench() { local name=$1; shift
  part $name 80 env "$@" python3 -m spmd_infer.bench bench.preset=qwen3-8b bench.workload=decode \
    'bench.batch_sizes=[1,16]' bench.context=1024 bench.repeats=2 bench.output=$OUT/$name.json
  echo "$name $*"; grep -E "runs:|Error|compiled during" "$OUT/$name.txt" | cut -c1-150; }
bench off SPMD_QKV_NORM_ROPE=0
for tile in 128,4,4 256,4,3 64,4,6; do
  bench on_${tile//,/_} SPMD_QKV_NORM_ROPE=1 SPMD_QKV_NORM_CONFIG=$tile
done
rm -rf "$OUT"/*.run "$OUT"/*.json "$OUT"/kernels.txt
