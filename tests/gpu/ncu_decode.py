"""Paged decode attention (or, with --mla, MLA's latent decode) on one shape of tune_decode_attention.py
(tune_mla_decode.py), called a few times, for Nsight Compute to profile one of its split-kernel launches (the stall
reasons behind a tile's share of the copy rate).

usage (on a GPU machine, after `source tests/gpu/device_env.sh`):
  ncu --kernel-name regex:_decode_split --launch-skip 2 --launch-count 1 --set full \
      python tests/gpu/ncu_decode.py --shape "qwen3-0.6b nano bs256" --dtype fp8
  ... python tests/gpu/ncu_decode.py --mla --shape "dsv2-lite 1x1 bs256@1k" --dtype bf16
"""

from __future__ import annotations

import argparse

import torch

from spmd_kernels import mla_decode, paged_decode_attention
# tests/gpu/, the script's own folder
import tune_decode_attention
import tune_mla_decode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mla", action="store_true", help="MLA decode (tune_mla_decode.py's shapes)")
    ap.add_argument("--shape", default=None, help="a shape name of the tune script; default: its first")
    ap.add_argument("--dtype", default="fp8", choices=("fp8", "bf16"))
    ap.add_argument("--calls", type=int, default=3)
    args = ap.parse_args()
    shapes = tune_mla_decode.SHAPES if args.mla else tune_decode_attention.SHAPES
    shape = args.shape or next(iter(shapes))
    if shape not in shapes:
        raise SystemExit(f"--shape: one of {sorted(shapes)}")
    if args.mla:
        batch, heads, lens = shapes[shape]
        q, q_pe, cache, bt, ctx, _ = tune_mla_decode.build(batch, heads, lens, fp8=args.dtype == "fp8")
        run = lambda out: mla_decode(q, q_pe, cache, bt, ctx, 192**-0.5, out=out)  # noqa: E731
    else:
        batch, hq, hkv, lens = shapes[shape]
        dtype = torch.float8_e4m3fn if args.dtype == "fp8" else torch.bfloat16
        q, k, v, bt, ctx, _ = tune_decode_attention.build(batch, hq, hkv, lens, kv_dtype=dtype)
        run = lambda out: paged_decode_attention(q, k, v, bt, ctx, tune_decode_attention.D**-0.5, out=out)  # noqa
    out = torch.empty_like(q)
    for _ in range(args.calls):
        run(out)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
