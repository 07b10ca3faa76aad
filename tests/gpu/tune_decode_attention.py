"""GPU sweep of paged decode attention's launch config (BLOCK_N, warps, stages) and split policy (waves, minimum
tokens per split) over the engine's decode shapes, in achieved KV bandwidth against the card's copy rate, timed
inside CUDA graphs as the engine runs it: the numbers behind decode_attention's defaults.

usage (on a GPU machine, in the repo root, after `source tests/gpu/device_env.sh`):
  python tests/gpu/tune_decode_attention.py [--json best.json] [--configs "64,2,4 128,4,3"]
  python tests/gpu/tune_decode_attention.py --fp8 [--configs "256,4,3 128,4,4"]
  python tests/gpu/tune_decode_attention.py --layouts [--pages "16 32 64"]
--json writes the setting with the best geometric-mean time over the shapes, as SPMD_DECODE_* values.
--fp8 times a float8 cache instead: each tile config for every launch with the dots in fp16 and in bf16
(FP8_DOTS_IN_F16), the engine's tiles by split count (FP8_SPLIT_CONFIGS), and the default on a bf16 cache beside them.
--layouts times the engine's defaults over each cache layout: token-major pages [blocks, page, Hkv, D] (a token's
heads side by side) against head-major ones [blocks, Hkv, page, D] (each head's page one contiguous run), in bf16 and
float8, for each page size given (at 41575fb it also timed V laid out by head dimension: run_v_by_dim.sh).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random

import torch
import triton.testing

from spmd_infer.bench.ceilings import measure_ceilings
from spmd_kernels import decode_settings as ds
from spmd_kernels import choose_num_splits, paged_decode_attention, paged_decode_attention_ref
# sweep_tools: tests/gpu/, the script's own folder
from sweep_tools import print_best_rows, print_overall_best, print_ranking, relative_scores, time_in_graph

# name: (batch, q heads, kv heads, context lengths drawn uniform in [lo, hi])
SHAPES = {
    "qwen3-0.6b nano bs256": (256, 16, 8, (200, 2048)),
    "qwen3-0.6b nano bs64": (64, 16, 8, (1024, 2048)),
    "llama-8b bs64@1k": (64, 32, 8, (1024, 1024)),
    "llama-8b bs1@1k": (1, 32, 8, (1024, 1024)),
    "qwen3-8b dp4 bs64": (64, 32, 8, (200, 2048)),
    "qwen3-8b bs16": (16, 32, 8, (200, 2048)),
}
PAGE, D = 16, 128
CONFIGS = [(64, 4, 3), (64, 4, 2), (64, 8, 2), (128, 4, 2), (128, 4, 3), (128, 8, 2), (32, 4, 3)]
WAVES = [4, 8, 16]
MIN_SPLIT = [128, 256]


def build(batch, hq, hkv, lens, seed=0, kv_dtype=torch.bfloat16, page=PAGE, head_major=False):
    rnd = random.Random(seed)
    ctx = [rnd.randint(*lens) for _ in range(batch)]
    blocks = [(c + page - 1) // page for c in ctx]
    num_blocks = sum(blocks) + 8
    if head_major:  # [blocks, Hkv, page, D] seen as [blocks, page, Hkv, D]: the kernels take any strides
        k = torch.randn(num_blocks, hkv, page, D, dtype=torch.bfloat16, device="cuda").transpose(1, 2)
    else:
        k = torch.randn(num_blocks, page, hkv, D, dtype=torch.bfloat16, device="cuda")
    v = torch.randn_like(k)
    perm = torch.randperm(num_blocks, device="cuda").int()
    bt = torch.zeros(batch, max(blocks), dtype=torch.int32, device="cuda")
    at = 0
    for i, nb in enumerate(blocks):
        bt[i, :nb] = perm[at:at + nb]
        at += nb
    q = torch.randn(batch, hq, D, dtype=torch.bfloat16, device="cuda")
    k, v = k.to(kv_dtype), v.to(kv_dtype)
    return q, k, v, bt, torch.tensor(ctx, dtype=torch.int32, device="cuda"), sum(ctx) * hkv * D * 2 * k.element_size()


def sweep_fp8(bw: float, configs: list[tuple], dots: list[bool]) -> None:
    """A float8 cache: every tile config with these dot precisions (fp16: True) for every launch, and the engine's
    own tiles by split count (decode_settings.FP8_SPLIT_CONFIGS, marked default), against the default on a bf16
    cache."""
    default = (ds.FP8_SPLIT_CONFIGS, ds.FP8_DOTS_IN_F16)
    settings = [((c,), d) for c, d in itertools.product(configs, dots)]
    settings += [default] if default not in settings else []
    times: dict[tuple, list[float]] = {s: [] for s in settings}
    for name, (batch, hq, hkv, lens) in SHAPES.items():
        q, k, v, bt, ctx, kv_bytes = build(batch, hq, hkv, lens, kv_dtype=torch.float8_e4m3fn)
        ref = paged_decode_attention_ref(q.float(), k.float(), v.float(), bt, ctx, D**-0.5)
        out = torch.empty_like(q)
        q16, k16, v16 = build(batch, hq, hkv, lens)[:3]
        bf16 = triton.testing.do_bench_cudagraph(
            lambda: paged_decode_attention(q16, k16, v16, bt, ctx, D**-0.5, out=torch.empty_like(q16)), rep=30)
        rows = []
        for setting in settings:
            ds.FP8_SPLIT_CONFIGS, ds.FP8_DOTS_IN_F16 = setting
            fn = lambda: paged_decode_attention(q, k, v, bt, ctx, D**-0.5, out=out)  # noqa: E731
            t, err = time_in_graph(f"{name} {setting}", fn, lambda: (out.float() - ref).abs().max().item())
            times[setting].append(t)
            rows.append((t, setting, err))
        ds.FP8_SPLIT_CONFIGS, ds.FP8_DOTS_IN_F16 = default
        print(f"\n{name}: {kv_bytes / 1e9:.3f} GB of float8 KV per layer; bf16 cache (default config) "
              f"{bf16 * 1e3:.1f} us")
        print_best_rows(rows, default, lambda r: f"{r[0] * 1e3:8.1f} us  {kv_bytes / (r[0] * 1e-3) / bw:6.1%} of copy  "
                        f"tiles={' '.join(map(str, r[1][0]))} f16_dots={r[1][1]} err={r[2]:.3f}", top=8)
    print_ranking(times, relative_scores(times, default),
                  lambda s: f"tiles={' '.join(map(str, s[0]))} f16_dots={s[1]}")


ORDERS = os.environ.get("TUNE_ORDERS", "1") == "1"  # --layouts also times each case with programs longest first


def compare_layouts(bw: float, pages: list[int]) -> None:
    """Each shape with the engine's default tiles over token-major and head-major pages of each size, bf16 and
    float8: time, share of the copy rate and error against the reference."""
    for name, (batch, hq, hkv, lens) in SHAPES.items():
        print(f"\n{name}")
        for dtype, page, head_major in itertools.product((torch.bfloat16, torch.float8_e4m3fn), pages, (False, True)):
            q, k, v, bt, ctx, kv_bytes = build(batch, hq, hkv, lens, kv_dtype=dtype, page=page, head_major=head_major)
            ref = paged_decode_attention_ref(q.float(), k.float(), v.float(), bt, ctx, D**-0.5)
            out = torch.empty_like(q)
            longest_first = torch.argsort(ctx, descending=True).int()
            for order in (None, longest_first) if ORDERS else (None,):
                fn = lambda: paged_decode_attention(q, k, v, bt, ctx, D**-0.5, out=out, order=order)  # noqa: E731
                t, err = time_in_graph(name, fn, lambda: (out.float() - ref).abs().max().item())
                print(f"  {str(dtype).split('.')[1]:14} page {page:3} {'head-major ' if head_major else 'token-major'} "
                      f"{'longest first' if order is not None else 'batch order  '} "
                      f"{t * 1e3:8.1f} us  {kv_bytes / (t * 1e-3) / bw:6.1%} of copy  err={err:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write the best setting here")
    ap.add_argument("--fp8", action="store_true", help="time a float8 cache (tile configs x fp16 / bf16 dots)")
    ap.add_argument("--configs", help="these tiles instead, 'BLOCK_N,warps,stages ...'; with --fp8 fp16 dots only, "
                    "without it the default split policy only")
    ap.add_argument("--layouts", action="store_true", help="token-major against head-major pages, default tiles")
    ap.add_argument("--pages", default=str(PAGE), help="with --layouts: the page sizes to time, e.g. '16 32 64'")
    args = ap.parse_args()
    bw = measure_ceilings(torch.device("cuda"), torch.bfloat16).bandwidth_bytes_per_s
    print(f"{torch.cuda.get_device_name()}: copy rate {bw / 1e12:.2f} TB/s")
    configs = [tuple(map(int, c.split(","))) for c in args.configs.split()] if args.configs else None
    if args.layouts:
        compare_layouts(bw, [int(p) for p in args.pages.split()])
        return
    if args.fp8:
        if configs:
            sweep_fp8(bw, sorted(set(configs)), [ds.FP8_DOTS_IN_F16])
        else:
            sweep_fp8(bw, CONFIGS, [True, False])
        return
    default = (ds.CUDA_CONFIG, ds.SPLIT_WAVES, ds.MIN_SPLIT_TOKENS)
    if configs:
        settings = [(c, ds.SPLIT_WAVES, ds.MIN_SPLIT_TOKENS) for c in sorted(set(configs) | {ds.CUDA_CONFIG})]
    else:
        settings = list(itertools.product(CONFIGS, WAVES, MIN_SPLIT))
    times: dict[tuple, list[float]] = {s: [] for s in settings}
    for name, (batch, hq, hkv, lens) in SHAPES.items():
        q, k, v, bt, ctx, kv_bytes = build(batch, hq, hkv, lens)
        ref = paged_decode_attention_ref(q.float(), k.float(), v.float(), bt, ctx, D**-0.5)
        out = torch.empty_like(q)
        rows = []
        for setting in settings:
            ds.CUDA_CONFIG, ds.SPLIT_WAVES, ds.MIN_SPLIT_TOKENS = setting
            fn = lambda: paged_decode_attention(q, k, v, bt, ctx, D**-0.5, out=out)  # noqa: E731
            t, err = time_in_graph(f"{name} {setting}", fn, lambda: (out.float() - ref).abs().max().item())
            times[setting].append(t)
            splits = choose_num_splits(batch, hkv, bt.shape[1] * PAGE, q.device)
            rows.append((t, setting, splits, err))
        ds.CUDA_CONFIG, ds.SPLIT_WAVES, ds.MIN_SPLIT_TOKENS = default
        print(f"\n{name}: {kv_bytes / 1e9:.3f} GB of KV per layer")
        print_best_rows(rows, default, lambda r: f"{r[0] * 1e3:8.1f} us  {kv_bytes / (r[0] * 1e-3) / bw:6.1%} of copy  "
                        f"config={r[1][0]} waves={r[1][1]} min_split={r[1][2]} splits={r[2]} err={r[3]:.3f}")
    best, score = print_overall_best(times, default, lambda s: f"config={s[0]} waves={s[1]} min_split={s[2]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"SPMD_DECODE_CONFIG": ",".join(map(str, best[0])), "SPMD_DECODE_SPLIT_WAVES": best[1],
                       "SPMD_DECODE_MIN_SPLIT_TOKENS": best[2], "vs_default": score[best]}, f)


if __name__ == "__main__":
    main()
