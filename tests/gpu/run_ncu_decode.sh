#!/usr/bin/env bash
# One 1-GPU device call (~3 min): Nsight Compute on paged decode attention's split kernel, nano-vllm bs256 (one
# split), float8 and bf16 cache: the full section set as text (stall reasons, pipe use, memory throughput) and the
# SASS with its per-instruction stall samples as CSV. DTYPES (default "fp8 bf16") picks the caches; the environment
# passes on (SPMD_DECODE_* settings), NCU_ARGS to ncu_decode.py (e.g. "--shape ..."); sass_opcodes.py sums the SASS by
# opcode. Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
for dt in ${DTYPES:-fp8 bf16}; do
  part "ncu_$dt" 200 "$NCU" --kernel-name regex:_decode_split --launch-skip 2 --launch-count 1 --set full \
    --import-source yes -f -o "$OUT/decode_$dt" python3 tests/gpu/ncu_decode.py --dtype "$dt" ${NCU_ARGS:-}
  tail -5 "$OUT/ncu_$dt.txt"
  part "details_$dt" 60 "$NCU" --import "$OUT/decode_$dt.ncu-rep" --page details
  part "sass_$dt" 60 "$NCU" --import "$OUT/decode_$dt.ncu-rep" --page source --csv --print-source sass
  python3 tests/gpu/sass_opcodes.py "$OUT/sass_$dt.txt" --top 15
done
grep -E "Duration|Memory Throughput|DRAM Throughput|Achieved Occupancy|Registers Per|Shared Memory Config|Stall|Issue Slots|Eligible|Active Warps" "$OUT"/details_*.txt | cut -c1-160
