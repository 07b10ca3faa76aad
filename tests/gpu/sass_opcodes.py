"""The SASS of one Nsight Compute report's kernel, summed by opcode: instructions executed and stall samples per
opcode (and the full opcode with modifiers for the heaviest), and the stall reasons over the whole kernel.

usage: ncu --import REPORT.ncu-rep --page source --csv --print-source sass > sass.csv
       python tests/gpu/sass_opcodes.py sass.csv [--top 25]
(run_ncu_decode.sh does both.) Session 12 read the float8 decode kernel's byte gather of V off this table: LDS.U8
and F2FP.F16.E4M3.UNPACK_B, 9.5M each of 108M instructions.
"""

from __future__ import annotations

import argparse
import collections
import csv


def opcode(source: str) -> str:
    """The instruction's opcode with its modifiers, its predicate (@P0, @!P1) dropped; '' for a non-instruction."""
    words = source.split()
    if words and words[0].startswith("@"):
        words = words[1:]
    return words[0].rstrip(",;") if words else ""


def summarise(path: str, top: int) -> None:
    with open(path) as f:
        rows = list(csv.reader(f))
    start = next(i for i, r in enumerate(rows) if "Source" in r and "Instructions Executed" in r)
    header, data = rows[start], rows[start + 1:]
    src, executed = header.index("Source"), header.index("Instructions Executed")
    sampled = header.index("Warp Stall Sampling (All Samples)")
    stall_columns = [i for i, h in enumerate(header) if h.startswith("stall_") and "Not Issued" not in h]
    by_base, by_full, samples, stalls = (collections.Counter() for _ in range(4))
    for row in data:
        if len(row) < len(header):
            continue
        op = opcode(row[src])
        if not op:
            continue
        n, s = int(row[executed] or 0), int(row[sampled] or 0)
        by_base[op.split(".")[0]] += n
        by_full[op] += n
        samples[op.split(".")[0]] += s
        for i in stall_columns:
            stalls[header[i][len("stall_"):]] += int(row[i] or 0)
    total, total_samples = sum(by_base.values()), max(sum(samples.values()), 1)
    print(f"{path}: {total:,} instructions executed, {sum(samples.values()):,} stall samples")
    for op, n in by_base.most_common(top):
        print(f"  {op:10} {n:14,} {n / total:6.1%} of instructions, {samples[op] / total_samples:6.1%} of samples")
    print("  heaviest with modifiers: " + ", ".join(f"{op} {n:,}" for op, n in by_full.most_common(8)))
    print("  stall reasons: " + ", ".join(f"{k} {v / total_samples:.1%}" for k, v in stalls.most_common(10)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", nargs="+", help="ncu --page source --csv --print-source sass output")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    for path in args.csv:
        summarise(path, args.top)


if __name__ == "__main__":
    main()
