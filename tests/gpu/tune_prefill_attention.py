"""GPU sweep of paged prefill attention's launch config (BLOCK_M, BLOCK_N, warps, stages) and query-tile order over
the engine's prefill shapes, in TFLOP/s of the causal attention against the card's bf16 matmul rate, timed inside
CUDA graphs: the numbers behind prefill_attention.CUDA_CONFIGS (the first slice's (64, 64, 4, 2), never swept on a
GPU before session 21) and its `heavy_first` order.

In session 21's profile of the nano-vllm protocol's prefill (run_nano_prefill_profile.sh, H200) `_prefill_kernel` took
3.3 of a step's 15.4 ms of kernels, ~160 TFLOP/s over prompts of 100-1024 tokens, while the GEMMs ran at ~840.

usage (on a GPU machine, in the repo root, after `source tests/gpu/device_env.sh`):
  python tests/gpu/tune_prefill_attention.py [--configs "64,64,4,2 128,64,8,2"] [--shapes nano llama-8x2048]
"""

from __future__ import annotations

import argparse
import itertools
import random

import torch

from spmd_infer.bench.ceilings import measure_ceilings
from spmd_kernels import paged_prefill_attention, paged_prefill_attention_ref
# sweep_tools: tests/gpu/, the script's own folder
from sweep_tools import print_best_rows, print_overall_best, relative_scores, time_in_graph

PAGE = 16
# name: (q heads, kv heads, head dim of q/k, of v, [(query tokens, context tokens)] of one prefill step)
_rnd = random.Random(0)
_nano_lens = [_rnd.randint(100, 1024) for _ in range(15)]
SHAPES = {
    # A nano-vllm prefill step of Qwen3-0.6B: ~8k tokens of fresh prompts, 100-1024 each.
    "nano": (16, 8, 128, 128, [(n, n) for n in _nano_lens]),
    # issue 4's prefill figure: Llama-3-8B, 8 x 2048 in one step.
    "llama-8x2048": (32, 8, 128, 128, [(2048, 2048)] * 8),
    # A long prompt's later chunk: 2048 new queries over 6k cached tokens (chunked prefill, prefix caching).
    "llama-chunk": (32, 8, 128, 128, [(2048, 8192)] * 2),
    # DeepSeek-V2-Lite's MLA prefill, K/V expanded per head (q/k 192 wide, v 128): 8 x 1024 a step.
    "mla-8x1024": (16, 16, 192, 128, [(1024, 1024)] * 8),
}
CONFIGS = [(bm, bn, w, s) for bm, bn, w, s in itertools.product((64, 128), (32, 64, 128), (4, 8), (2, 3))
           if not (bm == 128 and w == 4 and bn == 128)]


def build(hq: int, hkv: int, d: int, dv: int, seqs: list[tuple[int, int]]):
    """q, paged K/V (blocks in a shuffled order), block tables, cu_seqlens, context lens and the causal FLOPs."""
    blocks = [(c + PAGE - 1) // PAGE for _, c in seqs]
    num_blocks = sum(blocks) + 8
    k = torch.randn(num_blocks, PAGE, hkv, d, dtype=torch.bfloat16, device="cuda")
    v = torch.randn(num_blocks, PAGE, hkv, dv, dtype=torch.bfloat16, device="cuda")
    perm = torch.randperm(num_blocks, device="cuda").int()
    bt = torch.zeros(len(seqs), max(blocks), dtype=torch.int32, device="cuda")
    at = 0
    for i, nb in enumerate(blocks):
        bt[i, :nb] = perm[at:at + nb]
        at += nb
    q_lens = [n for n, _ in seqs]
    cu = torch.tensor([0] + q_lens, dtype=torch.int32).cumsum(0).to(torch.int32).cuda()
    ctx = torch.tensor([c for _, c in seqs], dtype=torch.int32, device="cuda")
    q = torch.randn(sum(q_lens), hq, d, dtype=torch.bfloat16, device="cuda")
    # Query j of a sequence sees c - n + j + 1 keys; each (query, key) pair is a q.k dot and a p.v product.
    pairs = sum(n * (c - n) + n * (n + 1) // 2 for n, c in seqs)
    return q, k, v, bt, cu, ctx, max(q_lens), 2 * pairs * hq * (d + dv)


def sweep(shapes: dict[str, tuple], settings: list[tuple], peak: float, default: tuple) -> dict[tuple, list[float]]:
    """Each setting (config, heavy_first) over each shape: its time per shape, and each shape's best rows printed."""
    times: dict[tuple, list[float]] = {s: [] for s in settings}
    for name, (q, k, v, bt, cu, ctx, max_q, flops, ref, scale) in shapes.items():
        out = q.new_empty(q.shape[0], q.shape[1], v.shape[-1])
        rows = []
        for config, heavy_first in settings:
            fn = lambda: paged_prefill_attention(q, k, v, cu, ctx, bt, scale, max_seqlen_q=max_q, out=out,  # noqa
                                                 config=config, heavy_first=heavy_first)
            t, err = time_in_graph(f"{name} {config} {heavy_first}", fn, lambda: (out.float() - ref).abs().max().item())
            if err > 0.05:  # a wrong result is no candidate, however fast
                print(f"  {name} {config} heavy_first={heavy_first} WRONG: max error {err:.3g}")
                t = float("inf")
            times[(config, heavy_first)].append(t)
            rows.append((t, (config, heavy_first), err))
        print(f"\n{name}: {q.shape[0]} queries, {flops / 1e12:.2f} TFLOP")
        print_best_rows(rows, default, lambda r: f"{r[0] * 1e3:8.1f} us  {flops / (r[0] * 1e-3) / 1e12:5.0f} TFLOP/s "
                        f"({flops / (r[0] * 1e-3) / peak:5.1%} of matmul)  config={r[1][0]} "
                        f"heavy_first={r[1][1]} err={r[2]:.3f}", top=5)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", help="these tiles instead, 'BLOCK_M,BLOCK_N,warps,stages ...'")
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = ap.parse_args()
    configs = [tuple(map(int, c.split(","))) for c in args.configs.split()] if args.configs else CONFIGS
    peak = measure_ceilings(torch.device("cuda"), torch.bfloat16).matmul_flops_per_s
    print(f"{torch.cuda.get_device_name()}: bf16 matmul {peak / 1e12:.0f} TFLOP/s")
    shapes = {}
    for name in args.shapes:
        hq, hkv, d, dv, seqs = SHAPES[name]
        q, k, v, bt, cu, ctx, max_q, flops = build(hq, hkv, d, dv, seqs)
        ref = paged_prefill_attention_ref(q, k, v, cu, ctx, bt, d ** -0.5).float()
        shapes[name] = (q, k, v, bt, cu, ctx, max_q, flops, ref, d ** -0.5)
    default = (None, False)  # the kernel's own tiles (_launch_config), query tiles in order
    # Pass 1: the tiles in order; pass 2: the best four and the default with the query tiles last to first.
    print("\n== tiles, query tiles in order")
    times = sweep(shapes, [default] + [(c, False) for c in configs], peak, default)
    scores = relative_scores(times, default)
    best = sorted(scores, key=scores.get)[:4]
    print("\n== the best four and the default, query tiles last to first (heavy_first)")
    # The default again beside them (its row marks each shape), but the ranking keeps pass 1's times for it.
    reversed_times = sweep(shapes, [default] + [(c, True) for c, _ in best if c is not None] + [(None, True)], peak,
                           default)
    times.update({s: t for s, t in reversed_times.items() if s != default})
    print_overall_best(times, default, lambda s: f"config={s[0]} heavy_first={s[1]}", top=8)


if __name__ == "__main__":
    main()
