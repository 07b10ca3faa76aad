"""Times candidate_thresholds (kernels/filter_thresholds.py: a row group's sampler threshold, one program a row whose
exp sum streams the whole row) over its warp count, at Qwen3's vocabulary and filters (top_k 20 + top_p 0.95) and
with top_p alone over 1024 candidates. A lone row runs on one SM, so at small batches the warps decide.

    python3 tests/gpu/tune_candidate_thresholds.py [--vocab 151936] [--rows 1,16,256]
"""

from __future__ import annotations

import argparse
import itertools

import torch
import triton.testing

import spmd_kernels.filter_thresholds as thresholds
from spmd_kernels import candidate_thresholds

WARPS = (4, 8, 16, 32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--rows", default="1,16,256")
    args = ap.parse_args()
    dev = torch.device("cuda")
    default = thresholds.THRESHOLD_WARPS
    print(f"{torch.cuda.get_device_name()}, vocabulary {args.vocab}, bf16 randn x 3 logits; us per call by warps")
    for S, (K, top_k, top_p) in itertools.product([int(r) for r in args.rows.split(",")],
                                                   ((20, 20, 0.95), (1024, 0, 0.9))):
        g = torch.Generator(device=dev).manual_seed(S)
        logits = (torch.randn(S, args.vocab, device=dev, generator=g) * 3).to(torch.bfloat16)
        cand = logits.topk(K, dim=-1).values
        call = (logits, cand, torch.full((S,), 0.6, device=dev), torch.full((S,), top_k, device=dev),
                torch.full((S,), top_p, device=dev), torch.zeros(S, device=dev), True, False)
        cells, want = [], None
        for warps in [default] + [w for w in WARPS if w != default]:
            thresholds.THRESHOLD_WARPS = warps
            tau = candidate_thresholds(*call)[0]
            want = tau if want is None else want
            us = triton.testing.do_bench(lambda: candidate_thresholds(*call), rep=50) * 1e3
            cells.append(f"{warps:2d} warps {us:6.1f}{'' if torch.equal(tau, want) else ' (tau differs)'}")
        thresholds.THRESHOLD_WARPS = default
        print(f"S={S:4d} K={K:4d} top_k={top_k:2d}: " + "  ".join(cells))


if __name__ == "__main__":
    main()
