#!/usr/bin/env bash
# One 2-GPU device call (~3 min), session 29: Qwen3-MoE at tp2 through prefill graphs against transformers gave 2
# exact + 12 within top-5 + 2 outside (rows 3 and 12; row 12 is the 1x1 near tie, eager and graphed alike). The same
# check eager (SPMD_PREFILL_GRAPHS_MOE=0), then where the two engine runs' tokens differ, row by row. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
for moe in 1 0; do
  part "check_$moe" 200 env SPMD_PREFILL_GRAPHS_MOE=$moe python3 tests/gpu/check_vs_transformers.py --model qwen3moe \
    --layouts 1x2 --out "/tmp/check_$moe"
  echo "--- SPMD_PREFILL_GRAPHS_MOE=$moe"; grep -E "RESULT|OUTSIDE|Error|replayed" "$OUT/check_$moe.txt" | cut -c1-150
done
python3 - <<'PY'
import json
rows = [[json.loads(l)["token_ids"] for l in open(f"/tmp/check_{m}/qwen3moe-1x2.out.jsonl")] for m in (1, 0)]
same = sum(a == b for a, b in zip(*rows))
print(f"graphs against eager at tp2: {same} of {len(rows[0])} rows the same tokens")
for i, (a, b) in enumerate(zip(*rows)):
    if a != b:
        print(f"  row {i}: first difference at {next(j for j, (x, y) in enumerate(zip(a, b)) if x != y)}")
PY
rm -rf "$OUT"/*.run
