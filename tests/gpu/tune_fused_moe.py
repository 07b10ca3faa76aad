"""GPU sweep of the fused MoE kernels' tiles (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages) for the engine's MoE shapes,
timed inside CUDA graphs, against the weight-read bound (local experts' bytes / copy rate) and the matmul bound:
the numbers behind fused_moe.CUDA_CONFIGS. Also times the routing alone (moe_align_block_size, and its torch reference).

usage (on a GPU machine, in the repo root, after `source tests/gpu/device_env.sh`):
  python tests/gpu/tune_fused_moe.py [--fp8 [--activations model,fp8]] [--shapes SUBSTRING] [--tiles T;T...]
      [--down-tiles N,K,W,S;...]
--fp8: float8 experts with a scale per 128 x 128 block (model.expert_dtype=fp8), errors against the bf16 kernel on
their dequantized values, the weight-read bound at a byte a weight. --activations: sweep each shape once per
activations kind (fused_moe's `activations`; default: as the engine picks them).
"""

from __future__ import annotations

import argparse
import importlib

import torch
import triton.testing

from spmd_infer.bench.ceilings import measure_ceilings
from spmd_kernels import moe_align_block_size_ref
from spmd_kernels.block_fp8 import dequantize_blocks, quantize_blocks

# sweep_tools: tests/gpu/, the script's own folder
from sweep_tools import print_best_rows, time_in_graph

fm = importlib.import_module("spmd_kernels.fused_moe")  # the module: the package re-exports a same-named function

# name: (tokens T, hidden H, expert inter I, experts on this rank, experts in all, top-k)
SHAPES = {
    # DeepSeek-V2-Lite, dp4 + DP attention, experts split 4 ways (ep): every rank's MoE sees all DP ranks' tokens.
    "dsv2-lite ep4 decode bs1024x4": (4096, 2048, 1408, 16, 64, 6),
    "dsv2-lite ep4 decode bs64x4": (256, 2048, 1408, 16, 64, 6),
    "dsv2-lite 1x1 decode bs64": (64, 2048, 1408, 64, 64, 6),
    "dsv2-lite 1x1 decode bs256": (256, 2048, 1408, 64, 64, 6),
    "dsv2-lite ep4 prefill 4x2048": (8192, 2048, 1408, 16, 64, 6),
    # One GPU's 8192-token prefill chunk (the engine's default) over all 64 experts.
    "dsv2-lite 1x1 prefill 8192": (8192, 2048, 1408, 64, 64, 6),
    "qwen3-30b-a3b ep4 decode bs256x4": (1024, 2048, 768, 32, 128, 8),
    # Small decode batches on one GPU (session 31: at bs1 the gate_up kernel read its experts at ~56% of the copy
    # rate and down at ~45%, a grid under one wave).
    "qwen1.5-moe 1x1 decode bs1": (1, 2048, 1408, 60, 60, 4),
    "dsv2-lite 1x1 decode bs1": (1, 2048, 1408, 64, 64, 6),
    "dsv2-lite 1x1 decode bs8": (8, 2048, 1408, 64, 64, 6),
    "qwen3-30b-a3b 1x1 decode bs1": (1, 2048, 768, 128, 128, 8),
}
TILES = [(16, 64, 64, 4, 3), (16, 128, 64, 4, 3), (32, 64, 64, 4, 3), (32, 128, 64, 4, 4), (64, 64, 64, 4, 3),
         (64, 128, 64, 8, 3), (64, 128, 64, 4, 4), (128, 128, 64, 8, 3), (64, 64, 128, 4, 3)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fp8", action="store_true")
    ap.add_argument("--activations", default="", help="--fp8: comma-separated kinds (model, fp8) to sweep")
    ap.add_argument("--shapes", default="", help="only the shapes whose name contains this")
    ap.add_argument("--tiles", default="", help="tiles to sweep instead of TILES, e.g. '64,128,64,4,4;128,128,64,8,3'")
    ap.add_argument("--down-tiles", default="", help="bf16: the down kernel's own (BLOCK_N, BLOCK_K, warps, stages) "
                    "to sweep beside each tile (fused_moe.DOWN_TILES), e.g. '64,128,4,4;128,64,4,3'")
    args = ap.parse_args()
    kinds = [k for k in args.activations.split(",") if k] or [None]
    tiles = [tuple(int(v) for v in t.split(",")) for t in args.tiles.split(";") if t] or TILES
    # (tile, the down kernel's own tile or None: the same as gate / up's)
    downs = [None] + [tuple(int(v) for v in t.split(",")) for t in args.down_tiles.split(";") if t]
    assert not (args.fp8 and len(downs) > 1), "--down-tiles: experts in bf16 (float8's tiles follow their blocks)"
    default_downs = dict(fm.DOWN_TILES)
    ceil = measure_ceilings(torch.device("cuda"), torch.bfloat16)
    bw, flops = ceil.bandwidth_bytes_per_s, ceil.matmul_flops_per_s
    print(f"{torch.cuda.get_device_name()}: copy {bw / 1e12:.2f} TB/s, bf16 matmul {flops / 1e12:.0f} TFLOP/s")
    table = "CUDA_CONFIGS_FP8" if args.fp8 else "CUDA_CONFIGS"  # the one fused_moe takes for these experts
    default = dict(getattr(fm, table))
    for name, (T, H, inter, E, n_exp, k) in SHAPES.items():
        if args.shapes not in name:
            continue
        g = torch.Generator(device="cuda").manual_seed(0)
        x = torch.randn(T, H, device="cuda", dtype=torch.bfloat16, generator=g)
        w13 = (torch.randn(E, 2 * inter, H, device="cuda", generator=g) * H**-0.5).to(torch.bfloat16)
        w2 = (torch.randn(E, H, inter, device="cuda", generator=g) * inter**-0.5).to(torch.bfloat16)
        ids = torch.rand(T, n_exp, device="cuda", generator=g).argsort(dim=1)[:, :k].int()
        weights = torch.rand(T, k, device="cuda", generator=g)
        scales = {}
        if args.fp8:
            block = (128, 128)
            (w13, s13), (w2, s2) = quantize_blocks(w13, block), quantize_blocks(w2, block)
            scales = dict(w13_scale=s13, w2_scale=s2, scale_block=block)
            ref = fm.fused_moe(x, dequantize_blocks(w13, s13, block).to(x.dtype),
                               dequantize_blocks(w2, s2, block).to(x.dtype), weights, ids)
        else:
            ref = fm.fused_moe(x, w13, w2, weights, ids)
        local_pairs = ((ids >= 0) & (ids < E)).sum().item()
        touched = min(E, local_pairs)  # experts with at least one row (upper bound)
        weight_bytes = touched * 3 * inter * H * w13.element_size()
        flop = 2 * local_pairs * 3 * inter * H
        bound = max(weight_bytes / bw, flop / flops)
        kind = fm.config_kind(T * k, E, args.fp8, n_exp)
        routing = triton.testing.do_bench_cudagraph(lambda: fm.moe_align_block_size(ids, 64, E), rep=30)
        routing_torch = triton.testing.do_bench_cudagraph(lambda: moe_align_block_size_ref(ids, 64, E), rep=30)
        for act in kinds:
            rows = []
            for tile, down in ((t, d) for t in tiles for d in downs):
                setattr(fm, table, {key: tile for key in default})
                fm.DOWN_TILES = {key: down for key in default_downs}
                def run():
                    return fm.fused_moe(x, w13, w2, weights, ids, **scales, num_experts=n_exp, activations=act)

                t, err = time_in_graph(f"{name} {tile} down {down} {act}", run,
                                       lambda: (run().float() - ref.float()).abs().max().item())
                rows.append((t, (tile, down), err))
            setattr(fm, table, default)
            fm.DOWN_TILES = default_downs
            print(f"\n{name}{f' activations {act}' if act else ''}: {local_pairs} local (token, expert) rows, "
                  f"{weight_bytes / 1e6:.0f} MB of weights, {flop / 1e9:.1f} GFLOP; bound {bound * 1e6:.0f} us; "
                  f"routing alone {routing * 1e3:.1f} us (torch reference {routing_torch * 1e3:.1f}); "
                  f"engine picks {kind} = {default[kind]}")
            print_best_rows(rows, (default[kind], default_downs[kind]), lambda r: (
                f"{r[0] * 1e3:8.1f} us  {bound / (r[0] * 1e-3):6.1%} of bound  tile={r[1][0]}"
                f"{f' down={r[1][1]}' if r[1][1] else ''} err={r[2]:.3f}"))


if __name__ == "__main__":
    main()
