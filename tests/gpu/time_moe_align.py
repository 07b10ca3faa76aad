"""GPU timing of moe_align_block_size's two paths (one program, or three kernels and a fill) over decode batch sizes,
at several one-program limits (moe_align._ONE_PROGRAM_ELEMENTS), each checked against the torch reference: the
numbers behind that limit.

usage (on a GPU machine, in the repo root, after `source tests/gpu/device_env.sh`):
  python tests/gpu/time_moe_align.py [--limits 2048,8192,16384] [--batches 1,2,4,8,16,32,64]
"""

from __future__ import annotations

import argparse
import importlib

import torch

from spmd_kernels import moe_align_block_size_ref

# sweep_tools: tests/gpu/, the script's own folder
from sweep_tools import time_in_graph

align = importlib.import_module("spmd_kernels.moe_align")  # the module: its limit is a global read at each call

# name: (experts, top-k)
MODELS = {"qwen1.5-moe": (60, 4), "dsv2-lite": (64, 6), "qwen3-30b-a3b": (128, 8)}
BLOCK_M = 16  # fused_moe's small tile's rows


def _equal(got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...]) -> bool:
    """The two groupings agree where they are defined: the padded length, and every row and block before it."""
    n_pad = int(want[2].item())
    return (int(got[2].item()) == n_pad and torch.equal(got[0][:n_pad], want[0][:n_pad])
            and torch.equal(got[1][:n_pad // BLOCK_M], want[1][:n_pad // BLOCK_M]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limits", default="2048,8192,16384", help="one-program limits (one-hot elements) to time")
    ap.add_argument("--batches", default="1,2,4,8,16,32,64", help="decode batch sizes (tokens) to time")
    args = ap.parse_args()
    limits = [int(v) for v in args.limits.split(",")]
    default_limit = align._ONE_PROGRAM_ELEMENTS
    print(f"{torch.cuda.get_device_name()}: us a call in CUDA graphs; '3k' = three kernels and a fill; "
          f"default limit {default_limit}")
    print(f"{'model':14} {'bs':>4} {'pairs':>6} {'3k':>7} " + " ".join(f"{lim:>7}" for lim in limits))
    for name, (experts, k) in MODELS.items():
        for T in (int(v) for v in args.batches.split(",")):
            g = torch.Generator(device="cuda").manual_seed(T)
            ids = torch.rand(T, experts, device="cuda", generator=g).argsort(dim=1)[:, :k].int()
            want = moe_align_block_size_ref(ids, BLOCK_M, experts)
            cells = []
            for limit in [0] + limits:  # 0: every batch on the three-kernel path
                align._ONE_PROGRAM_ELEMENTS = limit
                align.ONE_PROGRAM = limit > 0
                t, bad = time_in_graph(f"{name} bs{T} limit {limit}", lambda: align.moe_align_block_size(
                    ids, BLOCK_M, experts), lambda: float(not _equal(align.moe_align_block_size(ids, BLOCK_M,
                                                                                              experts), want)))
                one = align.fits_one_program(T * k, experts)
                cells.append(f"{t * 1e3:6.1f}{'*' if one else ' '}{'!' if bad else ''}")
            print(f"{name:14} {T:>4} {T * k:>6} " + " ".join(f"{c:>7}" for c in cells))
    align._ONE_PROGRAM_ELEMENTS, align.ONE_PROGRAM = default_limit, True
    print("* one program; ! differs from the torch reference")


if __name__ == "__main__":
    main()
