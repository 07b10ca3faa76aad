"""Split-K launches (fp8_linear, skinny_gemm): each of a tile's programs writes its fp32 partial sums, and the last to
arrive, counted on a zeroed int32 a tile per device, adds them up in split order and resets the counter, so a CUDA
graph replays the launch with no zero fill and the result does not depend on which program came last."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# Tiles a split-K launch may have: launches with more tiles fill the SMs without splitting K.
MAX_SPLIT_TILES = 1 << 14
_COUNTERS: dict[torch.device, torch.Tensor] = {}


def split_counters(device: torch.device) -> torch.Tensor:
    """The device's counters, made on the first call (which must not be inside a CUDA graph capture). Launches on
    one stream share them: a launch's programs touch them only after its PDL wait, when the one before is done."""
    counters = _COUNTERS.get(device)
    if counters is None:
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            raise RuntimeError("the split-K counters are made on the first split launch, which must not be inside "
                               "a CUDA graph capture: run a step before capturing")
        counters = _COUNTERS[device] = torch.zeros(MAX_SPLIT_TILES, dtype=torch.int32, device=device)
    return counters


def split_scratch(splits: int, rows: int, cols: int, tiles: int, device: torch.device,
                  unused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(partial sums [splits, rows, cols] fp32, the device's counters) for a launch of `tiles` tiles with K split
    over `splits` programs; `unused` for both where K is not split (the kernel never reads them then)."""
    if splits == 1:
        return unused, unused
    assert tiles <= MAX_SPLIT_TILES, (tiles, MAX_SPLIT_TILES)
    return torch.empty((splits, rows, cols), dtype=torch.float32, device=device), split_counters(device)


@triton.jit
def arrive_with_partial_sums(part_ptrs, acc, mask, count_ptr):
    """Store this program's partial sums at part_ptrs and count it in at count_ptr; returns how many of the tile's
    programs had arrived before it (SPLIT_K - 1: this one is the last, and sums them up)."""
    tl.store(part_ptrs, acc, mask=mask)
    # Every thread's partial sums stored before the count goes up (the barrier), and released with it at GPU scope;
    # the last program acquires them all.
    tl.debug_barrier()
    return tl.atomic_add(count_ptr, 1, sem="acq_rel")


@triton.jit
def sum_partial_sums(part_ptr, tile_offs, mask, split_stride, count_ptr, SPLIT_K: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """The tile's partial sums (split j's at part_ptr + j * split_stride + tile_offs) added in split order, by its
    last program, which also resets the tile's counter for the next launch (a graph replays this one)."""
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for j in range(SPLIT_K):  # in split order: the sum is the same whichever program came last
        acc += tl.load(part_ptr + j * split_stride + tile_offs, mask=mask, other=0.0, cache_modifier=".cg")
    tl.store(count_ptr, 0)
    return acc
