"""The Gluon float8 decode kernel (gluon_decode_fp8.py, an experiment) on the device: its output against the fp32
reference and against decode_attention's kernel over the same float8 cache, then both timed in CUDA graphs over
tune_decode_attention's shapes (the engine's split count; the Gluon kernel's splits combined by the engine's reduce).

usage (on a GPU machine, in the repo root, after `source tests/gpu/device_env.sh`):
  python tests/gpu/time_gluon_decode.py [--stages 3] [--block 32] [--lazy 0] [--head-major]
"""

from __future__ import annotations

import argparse

import torch

from spmd_infer.bench.ceilings import measure_ceilings
from spmd_kernels import choose_num_splits, paged_decode_attention, paged_decode_attention_ref
from spmd_kernels.decode_attention import reduce_splits, split_scratch
# tests/gpu/, the script's own folder
from gluon_decode_fp8 import gluon_decode_fp8_kernel
from sweep_tools import time_in_graph
from tune_decode_attention import D, PAGE, SHAPES, build


def gluon_decode(q, k, v, bt, ctx, scale, num_splits, block_n, stages, lazy):
    B, Hq, _ = q.shape
    Hkv = k.shape[2]
    out = torch.empty_like(q)
    mid_o, mid_lse, mo, ml = split_scratch(out, ctx, num_splits)
    gluon_decode_fp8_kernel[(B, Hkv, num_splits)](
        q, k, v, bt, ctx, out, mid_o, mid_lse, scale * 1.4426950408889634, q.stride(0), q.stride(1), k.stride(0),
        k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2), bt.stride(0), out.stride(0), out.stride(1),
        *mo, *ml, num_splits, GROUP=Hq // Hkv, D=D, PAGE=PAGE, BLOCK_N=block_n, STAGES=stages,
        DIRECT=num_splits == 1, LAZY=lazy, num_warps=1)
    if num_splits > 1:
        reduce_splits(mid_o, mid_lse, out, num_splits, D)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stages", type=int, default=3)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--lazy", type=int, default=0, help="1: rescale the output only when a row's maximum grew")
    ap.add_argument("--head-major", action="store_true",
                    help="pages [blocks, Hkv, page, D] (each head's page one contiguous run) instead of the engine's "
                    "token-major [blocks, page, Hkv, D]; both kernels take strides")
    args = ap.parse_args()
    bw = measure_ceilings(torch.device("cuda"), torch.bfloat16).bandwidth_bytes_per_s
    print(f"{torch.cuda.get_device_name()}: copy rate {bw / 1e12:.2f} TB/s; Gluon BLOCK_N {args.block}, "
          f"{args.stages} stages, lazy rescale {args.lazy}, {'head' if args.head_major else 'token'}-major pages")
    for name, (batch, hq, hkv, lens) in SHAPES.items():
        q, k, v, bt, ctx, kv_bytes = build(batch, hq, hkv, lens, kv_dtype=torch.float8_e4m3fn,
                                           head_major=args.head_major)
        splits = choose_num_splits(batch, hkv, bt.shape[1] * PAGE, q.device)
        ref = paged_decode_attention_ref(q.float(), k.float(), v.float(), bt, ctx, D**-0.5)
        outs = {}

        def engine():
            outs["engine"] = paged_decode_attention(q, k, v, bt, ctx, D**-0.5, num_splits=splits)

        def gluon():
            outs["gluon"] = gluon_decode(q, k, v, bt, ctx, D**-0.5, splits, args.block, args.stages,
                                         bool(args.lazy))

        t_e, err_e = time_in_graph(f"{name} engine", engine, lambda: (outs["engine"].float() - ref).abs().max().item())
        t_g, err_g = time_in_graph(f"{name} gluon", gluon, lambda: (outs["gluon"].float() - ref).abs().max().item())
        apart = (outs["gluon"].float() - outs["engine"].float()).abs().max().item() if "gluon" in outs else float("nan")
        print(f"{name} ({splits} splits): engine {t_e * 1e3:7.1f} us ({kv_bytes / (t_e * 1e-3) / bw:5.1%}) "
              f"err {err_e:.4f}; gluon {t_g * 1e3:7.1f} us ({kv_bytes / (t_g * 1e-3) / bw:5.1%}) err {err_g:.4f}; "
              f"apart {apart:.4f}")


if __name__ == "__main__":
    main()
