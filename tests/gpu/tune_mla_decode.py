"""GPU sweep of MLA decode's launch config (BLOCK_N, warps, stages; BLOCK_H stays 16, tl.dot's smallest M) and split
policy (waves, minimum tokens per split) over DeepSeek-V2-Lite's decode shapes, in achieved latent-cache bandwidth
against the card's copy rate, timed inside CUDA graphs as the engine runs it: the numbers behind mla_decode's
CUDA_CONFIG (profiled at bs256 @1k, the untuned kernel read the cache at about half the copy rate).

usage (on a GPU machine, in the repo root, after `source tests/gpu/device_env.sh`):
  python tests/gpu/tune_mla_decode.py [--fp8] [--shapes bs256 bs64] [--default-splits] [--default-config]
--fp8: a float8 e4m3 latent cache (cache.dtype=fp8), each config with c_kv pinned where widened and not
(mla_decode.FP8_PIN_LATENT); --shapes: only the shapes whose names hold one of these words; --default-splits:
the split policy left at its default (waves, minimum tokens per split), launch configs only; --default-config: the
launch config left at its default (with both, one setting: the times of the kernel as it is, e.g. for an A/B of an
SPMD_MLA_* switch across two runs).
"""

from __future__ import annotations

import argparse
import itertools
import importlib
import random

import torch

from spmd_infer.bench.ceilings import measure_ceilings
from spmd_kernels import decode_settings as ds
from spmd_kernels import mla_decode, mla_decode_ref
# sweep_tools: tests/gpu/, the script's own folder
from sweep_tools import print_best_rows, print_overall_best, time_in_graph

mla = importlib.import_module("spmd_kernels.mla_decode")  # the module: the package re-exports a same-named function

# name: (batch, heads on this rank, context lengths drawn uniform in [lo, hi]); DeepSeek-V2-Lite: L 512, R 64.
SHAPES = {
    "dsv2-lite 1x1 bs256@1k": (256, 16, (1024, 1024)),
    "dsv2-lite dp-attn bs64@1k": (64, 16, (1024, 1024)),
    "dsv2-lite tp2 bs512@1k": (512, 8, (1024, 1024)),
    "dsv2-lite bs32 200..4k": (32, 16, (200, 4096)),
    "dsv2-lite bs1@1k": (1, 16, (1024, 1024)),
}
PAGE, L, R = 16, 512, 64
CONFIGS = [(16, (32, n), w, s) for n, w, s in itertools.product([16, 32, 64], [4, 8], [1, 2, 3])]
WAVES = [4, 8]
MIN_SPLIT = [128, 256]


def build(batch, heads, lens, fp8=False, seed=0):
    rnd = random.Random(seed)
    ctx = [rnd.randint(*lens) for _ in range(batch)]
    blocks = [(c + PAGE - 1) // PAGE for c in ctx]
    num_blocks = sum(blocks) + 8
    cache = torch.randn(num_blocks, PAGE, 1, L + R, dtype=torch.bfloat16, device="cuda")
    if fp8:
        cache = cache.to(torch.float8_e4m3fn)
    perm = torch.randperm(num_blocks, device="cuda").int()
    bt = torch.zeros(batch, max(blocks), dtype=torch.int32, device="cuda")
    at = 0
    for i, nb in enumerate(blocks):
        bt[i, :nb] = perm[at:at + nb]
        at += nb
    q = torch.randn(batch, heads, L, dtype=torch.bfloat16, device="cuda") * 0.05
    q_pe = torch.randn(batch, heads, R, dtype=torch.bfloat16, device="cuda") * 0.05
    kv_bytes = sum(ctx) * (L + R) * cache.element_size()
    return q, q_pe, cache, bt, torch.tensor(ctx, dtype=torch.int32, device="cuda"), kv_bytes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fp8", action="store_true")
    ap.add_argument("--shapes", nargs="*", default=[])
    ap.add_argument("--default-splits", action="store_true")
    ap.add_argument("--default-config", action="store_true")
    args = ap.parse_args()
    bw = measure_ceilings(torch.device("cuda"), torch.bfloat16).bandwidth_bytes_per_s
    print(f"{torch.cuda.get_device_name()}: copy rate {bw / 1e12:.2f} TB/s; latent cache "
          f"{'float8 e4m3' if args.fp8 else 'bfloat16'}")
    pins = [True, False] if args.fp8 else [mla.FP8_PIN_LATENT]
    waves, min_split = ([ds.SPLIT_WAVES], [ds.MIN_SPLIT_TOKENS]) if args.default_splits else (WAVES, MIN_SPLIT)
    config_name = "CUDA_CONFIG_FP8" if args.fp8 else "CUDA_CONFIG"  # the one mla_decode takes for this cache
    default = (getattr(mla, config_name), ds.SPLIT_WAVES, ds.MIN_SPLIT_TOKENS, mla.FP8_PIN_LATENT)
    configs = [getattr(mla, config_name)] if args.default_config else CONFIGS
    settings = list(itertools.product(configs, waves, min_split, pins if not args.default_config
                                      else [mla.FP8_PIN_LATENT]))
    times: dict[tuple, list[float]] = {s: [] for s in settings}
    scale = (128 + R) ** -0.5
    shapes = {n: v for n, v in SHAPES.items() if not args.shapes or any(w in n for w in args.shapes)}
    for name, (batch, heads, lens) in shapes.items():
        q, q_pe, cache, bt, ctx, kv_bytes = build(batch, heads, lens, args.fp8)
        ref = mla_decode_ref(q[:8], q_pe[:8], cache, bt[:8], ctx[:8], scale).float()
        out = torch.empty_like(q)
        rows = []
        for setting in settings:
            config, ds.SPLIT_WAVES, ds.MIN_SPLIT_TOKENS, mla.FP8_PIN_LATENT = setting
            setattr(mla, config_name, config)
            fn = lambda: mla_decode(q, q_pe, cache, bt, ctx, scale, out=out)  # noqa: E731
            t, err = time_in_graph(f"{name} {setting}", fn, lambda: (out[:8].float() - ref).abs().max().item())
            times[setting].append(t)
            rows.append((t, setting, err))
        config, ds.SPLIT_WAVES, ds.MIN_SPLIT_TOKENS, mla.FP8_PIN_LATENT = default
        setattr(mla, config_name, config)
        print(f"\n{name}: {kv_bytes / 1e9:.3f} GB of latent cache per layer")
        print_best_rows(rows, default, lambda r: f"{r[0] * 1e3:8.1f} us  {kv_bytes / (r[0] * 1e-3) / bw:6.1%} of copy  "
                        f"config={r[1][0]} waves={r[1][1]} min_split={r[1][2]} pin={int(r[1][3])} err={r[2]:.4f}")
    print_overall_best(times, default, lambda s: f"config={s[0]} waves={s[1]} min_split={s[2]} pin={int(s[3])}",
                       top=6)


if __name__ == "__main__":
    main()
