#!/usr/bin/env bash
# One 2-GPU device call (~5 min), session 31: what run_full_suite_x2.sh left unfinished at its 330 s limit. The
# capture-fault test alone, its rank logs kept (--basetemp under $OUT). (The MoE jobs through prefill graphs, which
# that part had not reached either, passed on one GPU in run_qwen2_moe.sh.) Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
part capture 300 python3 -m pytest -vv --tb=short --basetemp="$OUT/bt" \
  tests/test_prefill_graphs.py::test_a_capture_failing_on_one_gpu_rank_goes_eager_everywhere_or_fails_the_job_fast
tail -3 "$OUT/capture.txt"
for log in "$OUT"/bt/*/*.run/rank*.log; do echo "--- $log"; grep -vE "^\s*$" "$log" | tail -12 | cut -c1-200; done
find "$OUT/bt" -name "*.safetensors" -delete
