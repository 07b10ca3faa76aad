"""Paged decode attention on one shape of tune_decode_attention.py, called a few times, for Nsight Compute to profile
one of its split-kernel launches (the stall reasons behind a tile's share of the copy rate).

usage (on a GPU machine, after `source tests/gpu/device_env.sh`):
  ncu --kernel-name regex:_decode_split --launch-skip 2 --launch-count 1 --set full \
      python tests/gpu/ncu_decode.py --shape "qwen3-0.6b nano bs256" --dtype fp8
"""

from __future__ import annotations

import argparse

import torch

from spmd_kernels import paged_decode_attention
# tests/gpu/, the script's own folder
from tune_decode_attention import D, SHAPES, build


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="qwen3-0.6b nano bs256", choices=sorted(SHAPES))
    ap.add_argument("--dtype", default="fp8", choices=("fp8", "bf16"))
    ap.add_argument("--calls", type=int, default=3)
    args = ap.parse_args()
    batch, hq, hkv, lens = SHAPES[args.shape]
    dtype = torch.float8_e4m3fn if args.dtype == "fp8" else torch.bfloat16
    q, k, v, bt, ctx, _ = build(batch, hq, hkv, lens, kv_dtype=dtype)
    out = torch.empty_like(q)
    for _ in range(args.calls):
        paged_decode_attention(q, k, v, bt, ctx, D**-0.5, out=out)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
