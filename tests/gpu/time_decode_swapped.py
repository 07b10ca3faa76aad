"""Times decode_swapped.py's transposed float8 decode attention against the engine's kernel (the same float8 cache,
its engine tile and the longest-first order) and against a bf16 cache, over tune_decode_attention's shapes, in CUDA
graphs; prints each variant's time, share of the copy rate in float8 bytes and error against the fp32 reference.

usage (GPU, repo root, after `source tests/gpu/device_env.sh`):
  python tests/gpu/time_decode_swapped.py [--variants "64,4,4,q8,g8 128,4,3,k16,g16 ..."] [--shapes "name,..."]
A variant is BLOCK_N,warps,stages, then q8 (q rounded to float8 per head, float8 score dot) or k16 (K widened to
fp16), then gN (heads padded to N, the dots' N side).
"""

from __future__ import annotations

import argparse

import torch

from decode_swapped import swapped_decode_attention
from spmd_infer.bench.ceilings import measure_ceilings
from spmd_kernels import paged_decode_attention, paged_decode_attention_ref
from sweep_tools import time_in_graph
from tune_decode_attention import D, SHAPES, build

VARIANTS = ("64,4,4,q8,g8 64,4,6,q8,g8 128,4,2,q8,g8 128,4,3,q8,g8 64,4,4,k16,g8 128,4,3,k16,g8 64,4,4,q8,g16 "
            "128,4,3,q8,g16 32,4,6,q8,g8")


def parse(variant: str):
    block, warps, stages, q, g = variant.split(",")
    return (int(block), int(warps), int(stages)), q == "q8", int(g[1:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default=VARIANTS)
    ap.add_argument("--shapes", default=",".join(SHAPES))
    args = ap.parse_args()
    bw = measure_ceilings(torch.device("cuda"), torch.bfloat16).bandwidth_bytes_per_s
    print(f"{torch.cuda.get_device_name()}: copy rate {bw / 1e12:.2f} TB/s")
    for name in args.shapes.split(","):
        batch, hq, hkv, lens = SHAPES[name]
        q, k, v, bt, ctx, kv_bytes = build(batch, hq, hkv, lens, kv_dtype=torch.float8_e4m3fn)
        ref = paged_decode_attention_ref(q.float(), k.float(), v.float(), bt, ctx, D**-0.5)
        order = torch.argsort(ctx, descending=True).int()
        out = torch.empty_like(q)
        q16, k16, v16 = build(batch, hq, hkv, lens)[:3]
        err = lambda: (out.float() - ref).abs().max().item()  # noqa: E731
        print(f"\n{name}: {kv_bytes / 1e9:.3f} GB of float8 KV")
        rows = [("bf16 cache, engine", *time_in_graph(name, lambda: paged_decode_attention(
            q16, k16, v16, bt, ctx, D**-0.5, out=torch.empty_like(q16), order=order), lambda: float("nan")))]
        rows.append(("fp8 cache, engine", *time_in_graph(name, lambda: paged_decode_attention(
            q, k, v, bt, ctx, D**-0.5, out=out, order=order), err)))
        for variant in args.variants.split():
            tile, q_fp8, min_g = parse(variant)
            rows.append((f"swapped {variant}", *time_in_graph(name, lambda: swapped_decode_attention(
                q, k, v, bt, ctx, D**-0.5, tile=tile, q_fp8=q_fp8, min_g=min_g, out=out, order=order), err)))
        base = rows[1][1]
        for label, t, e in rows:
            print(f"  {label:28} {t * 1e3:8.1f} us  {kv_bytes / (t * 1e-3) / bw:6.1%} of fp8 copy"
                  f"  x{base / t:5.2f}  err={e:.4f}")


if __name__ == "__main__":
    main()
