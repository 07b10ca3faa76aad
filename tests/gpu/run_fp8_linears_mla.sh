#!/usr/bin/env bash
# One 1-GPU device call (~6 min): float8 linear layers on an MLA + MoE model. DeepSeek-V2-Lite (4 layers) from its
# block-float8 copy against transformers on the dequantized values: model.linear_dtype=auto now keeps its
# projections float8 beside the float8 experts (q_proj, kv_a_proj_with_mqa's 576 rows ending mid-block, o_proj,
# the dense and shared MLPs; kv_b_proj, absorbed into MLA, dequantized); then decode bs256 / bs64 @1k with float8
# linear layers and experts (session 17 with bf16 linear layers: 11.1 / 8.4 ms a step). Session 17 ran it with the
# check under 120 s on a cold machine: killed while transformers' reference ran (its eager MoE, and every engine
# kernel compiling cold); decode 11.9 / 8.6 ms, 4% / 2% slower than bf16 linear layers (this model's dense layers
# are small: a quantizing launch a projection costs more than the halved bytes save). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
part check 240 python3 tests/gpu/check_vs_transformers.py --model dsv2lite --layouts 1x1 --out /tmp/chk_mla \
  --block-fp8
grep -E "^engine|RESULT|OUTSIDE|Error" "$OUT/check.txt" | head -6
grep -E "linear layers in float8" "$OUT/check.txt" | head -2 | cut -c1-200
LIMIT=90 decode_part decode_dsv2 deepseek-v2-lite -- model.expert_dtype=fp8 model.linear_dtype=fp8
grep -E "^model" "$OUT/decode_dsv2.txt" | cut -c1-160
rm -rf "$OUT"/*.run "$OUT"/*.json
