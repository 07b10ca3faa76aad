#!/usr/bin/env bash
# One 1-GPU device call (~2 min), session 38: the Gluon float8 decode kernel (gluon_decode_fp8.py, an experiment)
# checked against the reference and decode_attention's kernel and timed against it (time_gluon_decode.py), at 3 and
# 4 stages, over the engine's token-major pages and over head-major ones (each head's page one contiguous run: both
# kernels take strides). LAZY="1 0" also times the output rescaled only when a row's maximum grew. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
for pages in ${PAGES:-token head}; do
  flag=(); [[ $pages == head ]] && flag=(--head-major)
  for stages in ${STAGES:-3 4}; do
    for lazy in ${LAZY:-0}; do
      name="gluon_${pages}_${stages}_$lazy"
      part "$name" 100 python3 tests/gpu/time_gluon_decode.py --stages "$stages" --lazy "$lazy" "${flag[@]}"
      grep -vE "^\s*$|warn" "$OUT/$name.txt" | tail -12 | cut -c1-200
    done
  done
done
rm -rf "$OUT"/*.run
