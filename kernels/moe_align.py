"""MoE routing for the grouped GEMMs: (token, slot) pairs grouped by local expert, each group padded to BLOCK_M rows.

A counting sort in three small kernels (count per chunk, offsets, place) instead of torch's argsort and its dozen
helper ops: the profile of DeepSeek-V2-Lite decode showed the torch routing at 90-170 us a layer, more than the
expert GEMMs at small batches. Up to a few dozen pairs (small decode batches) one program does all three's work.
The result is the same as the stable torch reference, element for element.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .pdl import pdl_args, pdl_enter

# Pairs per program in the count and place kernels: a [CHUNK, BLOCK_E] one-hot tile, kept near 16k elements.
_TILE_ELEMENTS = 16384
# Up to this many one-hot elements (at least 16 pairs) all of it is one program's (_align_one_program_kernel): decode
# batches. Three launches and a fill take ~14-18 us at any size up to thousands of pairs on an H200, mostly scans over
# 16k-element tiles; one program ~2.6 us at a few pairs, ~12 at 16k elements (tests/gpu/time_moe_align.py, session
# 32: DeepSeek-V2-Lite's 64 experts in one program up to bs42, Qwen3-30B-A3B's 128 to bs16).
_ONE_PROGRAM_ELEMENTS = 16384
# SPMD_MOE_ALIGN_ONE_PROGRAM=0 keeps small batches on the three-kernel path (A/B runs).
ONE_PROGRAM = os.environ.get("SPMD_MOE_ALIGN_ONE_PROGRAM", "1") != "0"


def fits_one_program(n: int, num_local: int) -> bool:
    """Whether n pairs over num_local experts are grouped by the one-program kernel (SPMD_MOE_ALIGN_ONE_PROGRAM)."""
    return ONE_PROGRAM and n <= max(16, _ONE_PROGRAM_ELEMENTS // triton.next_power_of_2(num_local))


def _max_blocks(n: int, num_local: int, block_m: int) -> int:
    """Blocks in the worst case: floor(n / block_m) full ones plus one partial block per non-empty expert."""
    return min(triton.cdiv(n + num_local * (block_m - 1), block_m), n // block_m + min(num_local, n))


@triton.jit
def _chunk_onehot(ids_ptr, valid_ptr, n, first_expert, num_local, TOP_K: tl.constexpr, HAS_VALID: tl.constexpr,
                  CHUNK: tl.constexpr, BLOCK_E: tl.constexpr):
    """This program's chunk of pairs: their flat indices, local experts, whether each is computed here (on this
    rank's experts, its token valid), and the [CHUNK, BLOCK_E] one-hot of the kept pairs by expert."""
    offs = tl.program_id(0) * CHUNK + tl.arange(0, CHUNK)
    in_range = offs < n
    local = (tl.load(ids_ptr + offs, mask=in_range, other=0) - first_expert).to(tl.int32)
    keep = in_range & (local >= 0) & (local < num_local)
    if HAS_VALID:
        keep = keep & (tl.load(valid_ptr + offs // TOP_K, mask=in_range, other=0) != 0)
    onehot = ((local[:, None] == tl.arange(0, BLOCK_E)[None, :]) & keep[:, None]).to(tl.int32)
    return offs, local, keep, onehot


@triton.jit(do_not_specialize=["n"])  # T * top_k changes every step
def _count_kernel(ids_ptr, valid_ptr, counts_ptr, n, first_expert, num_local, TOP_K: tl.constexpr,
                  HAS_VALID: tl.constexpr, CHUNK: tl.constexpr, BLOCK_E: tl.constexpr, PDL: tl.constexpr):
    pdl_enter(PDL)
    _, _, _, onehot = _chunk_onehot(ids_ptr, valid_ptr, n, first_expert, num_local, TOP_K, HAS_VALID, CHUNK, BLOCK_E)
    tl.store(counts_ptr + tl.program_id(0) * BLOCK_E + tl.arange(0, BLOCK_E), tl.sum(onehot, axis=0))


@triton.jit(do_not_specialize=["num_chunks", "max_blocks"])
def _offsets_kernel(counts_ptr, bases_ptr, block_expert_ptr, num_padded_ptr, num_chunks, max_blocks, num_local,
                    block_m, BLOCK_C: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_B: tl.constexpr,
                    PDL: tl.constexpr):
    """One program: per-expert totals, padded runs, each chunk's first position per expert, each block's expert."""
    pdl_enter(PDL)
    experts = tl.arange(0, BLOCK_E)
    chunks = tl.arange(0, BLOCK_C)
    totals = tl.zeros([BLOCK_E], dtype=tl.int32)
    for c0 in range(0, num_chunks, BLOCK_C):
        rows = c0 + chunks
        tile = counts_ptr + rows[:, None] * BLOCK_E + experts[None, :]
        totals += tl.sum(tl.load(tile, mask=(rows < num_chunks)[:, None], other=0), axis=0)
    padded = (totals + block_m - 1) // block_m * block_m
    padded_end = tl.cumsum(padded, axis=0)
    carry = padded_end - padded  # where each expert's padded run starts; then past each chunk's pairs
    for c0 in range(0, num_chunks, BLOCK_C):
        rows = c0 + chunks
        row_mask = (rows < num_chunks)[:, None]
        counts = tl.load(counts_ptr + rows[:, None] * BLOCK_E + experts[None, :], mask=row_mask, other=0)
        before = tl.cumsum(counts, axis=0) - counts  # this expert's pairs in earlier chunks of the tile
        tl.store(bases_ptr + rows[:, None] * BLOCK_E + experts[None, :], before + carry[None, :], mask=row_mask)
        carry += tl.sum(counts, axis=0)
    tl.store(num_padded_ptr, tl.sum(padded, axis=0))
    _store_block_experts(block_expert_ptr, padded_end, experts, num_local, max_blocks, block_m, BLOCK_B)


@triton.jit
def _store_block_experts(block_expert_ptr, padded_end, experts, num_local, max_blocks, block_m,
                         BLOCK_B: tl.constexpr):
    """A block's expert: how many experts' padded runs end at or before its first row (searchsorted, right)."""
    ends = tl.where(experts < num_local, padded_end, 2147483647)
    for b0 in range(0, max_blocks, BLOCK_B):
        blocks = b0 + tl.arange(0, BLOCK_B)
        ended = tl.sum((ends[None, :] <= (blocks * block_m)[:, None]).to(tl.int32), axis=1)
        tl.store(block_expert_ptr + blocks, tl.where(ended < num_local, ended, -1), mask=blocks < max_blocks)


@triton.jit(do_not_specialize=["n"])
def _place_kernel(ids_ptr, valid_ptr, bases_ptr, sorted_ids_ptr, n, first_expert, num_local, TOP_K: tl.constexpr,
                  HAS_VALID: tl.constexpr, CHUNK: tl.constexpr, BLOCK_E: tl.constexpr, PDL: tl.constexpr):
    pdl_enter(PDL)
    offs, local, keep, onehot = _chunk_onehot(ids_ptr, valid_ptr, n, first_expert, num_local, TOP_K, HAS_VALID,
                                              CHUNK, BLOCK_E)
    # A pair's place among its expert's pairs in this chunk, in order: the stable sort.
    rank = tl.sum(tl.cumsum(onehot, axis=0) * onehot, axis=1) - 1
    base = tl.load(bases_ptr + tl.program_id(0) * BLOCK_E + local, mask=keep, other=0)
    tl.store(sorted_ids_ptr + base + rank, offs.to(tl.int32), mask=keep)


@triton.jit(do_not_specialize=["n", "max_blocks"])
def _align_one_program_kernel(ids_ptr, valid_ptr, sorted_ids_ptr, block_expert_ptr, num_padded_ptr, n, first_expert,
                              num_local, max_blocks, block_m, TOP_K: tl.constexpr, HAS_VALID: tl.constexpr,
                              CHUNK: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_P: tl.constexpr,
                              BLOCK_B: tl.constexpr, PDL: tl.constexpr):
    """All n <= CHUNK pairs in one program: the count, offsets and place kernels' work, and the padding's fill."""
    pdl_enter(PDL)
    offs, local, keep, onehot = _chunk_onehot(ids_ptr, valid_ptr, n, first_expert, num_local, TOP_K, HAS_VALID,
                                              CHUNK, BLOCK_E)
    padded = (tl.sum(onehot, axis=0) + block_m - 1) // block_m * block_m
    padded_end = tl.cumsum(padded, axis=0)
    start = tl.sum(onehot * (padded_end - padded)[None, :], axis=1)  # each pair's expert's first row
    rank = tl.sum(tl.cumsum(onehot, axis=0) * onehot, axis=1) - 1  # its place among its expert's pairs
    for p0 in range(0, max_blocks * block_m, BLOCK_P):  # padding rows hold n
        rows = p0 + tl.arange(0, BLOCK_P)
        tl.store(sorted_ids_ptr + rows, tl.zeros([BLOCK_P], tl.int32) + n, mask=rows < max_blocks * block_m)
    tl.debug_barrier()  # the pairs' rows below overwrite the fill of other threads
    tl.store(sorted_ids_ptr + start + rank, offs.to(tl.int32), mask=keep)
    tl.store(num_padded_ptr, tl.sum(padded, axis=0))
    _store_block_experts(block_expert_ptr, padded_end, tl.arange(0, BLOCK_E), num_local, max_blocks, block_m,
                         BLOCK_B)


def moe_align_block_size(
    topk_ids: torch.Tensor,
    block_m: int,
    num_local: int,
    first_expert: int = 0,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group the T*k (token, slot) pairs routed to local experts by expert, each group padded to block_m rows.

    Returns (sorted_ids int32 [max_blocks * block_m], block_expert int32 [max_blocks],
    num_padded int32 [1]). sorted_ids holds flat slot indices t * k + j in their original order within
    an expert (pad entries hold T * k); block_expert[b] is the local expert of rows b*block_m ...
    (b+1)*block_m - 1, or -1 past the padded end. Pairs whose expert is off this rank, or whose token
    has valid == False, are left out. Shapes depend only on (T, k, num_local, block_m); there is no
    host sync (CUDA-graph safe).
    """
    T, k = topk_ids.shape
    n = T * k
    if n == 0 or num_local == 0:
        return moe_align_block_size_ref(topk_ids, block_m, num_local, first_expert, valid)
    device = topk_ids.device
    max_blocks = _max_blocks(n, num_local, block_m)
    block_e = triton.next_power_of_2(num_local)
    ids = topk_ids if topk_ids.is_contiguous() else topk_ids.contiguous()
    valid_arg = valid.contiguous() if valid is not None else ids  # unread without HAS_VALID
    block_expert = torch.empty(max_blocks, dtype=torch.int32, device=device)
    num_padded = torch.empty(1, dtype=torch.int32, device=device)
    pdl = pdl_args(device)
    if fits_one_program(n, num_local):
        sorted_ids = torch.empty((max_blocks * block_m,), dtype=torch.int32, device=device)
        chunk = max(16, triton.next_power_of_2(n))  # a few variants: decode graphs' buckets compile them at startup
        _align_one_program_kernel[(1,)](ids, valid_arg, sorted_ids, block_expert, num_padded, n, first_expert,
                                        num_local, max_blocks, block_m, TOP_K=k, HAS_VALID=valid is not None,
                                        CHUNK=chunk, BLOCK_E=block_e, BLOCK_P=256, BLOCK_B=64, **pdl)
        return sorted_ids, block_expert, num_padded
    chunk = max(16, _TILE_ELEMENTS // block_e)  # fixed per model: no new variant as n changes
    num_chunks = triton.cdiv(n, chunk)
    scratch = torch.empty((2, num_chunks, block_e), dtype=torch.int32, device=device)  # counts, bases
    sorted_ids = torch.full((max_blocks * block_m,), n, dtype=torch.int32, device=device)
    common = dict(TOP_K=k, HAS_VALID=valid is not None, CHUNK=chunk, BLOCK_E=block_e, **pdl)
    _count_kernel[(num_chunks,)](ids, valid_arg, scratch[0], n, first_expert, num_local, **common)
    _offsets_kernel[(1,)](scratch[0], scratch[1], block_expert, num_padded, num_chunks, max_blocks, num_local,
                          block_m, BLOCK_C=max(16, 4096 // block_e), BLOCK_E=block_e, BLOCK_B=256, **pdl)
    _place_kernel[(num_chunks,)](ids, valid_arg, scratch[1], sorted_ids, n, first_expert, num_local, **common)
    return sorted_ids, block_expert, num_padded


def moe_align_block_size_ref(
    topk_ids: torch.Tensor,
    block_m: int,
    num_local: int,
    first_expert: int = 0,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plain-PyTorch reference for :func:`moe_align_block_size` (a stable argsort; no host sync either)."""
    T, k = topk_ids.shape
    n = T * k
    device = topk_ids.device
    max_blocks = _max_blocks(n, num_local, block_m)
    size = max_blocks * block_m
    if n == 0 or num_local == 0:  # nothing to compute here
        return (torch.full((size,), n, dtype=torch.int32, device=device),
                torch.full((max_blocks,), -1, dtype=torch.int32, device=device),
                torch.zeros(1, dtype=torch.int32, device=device))
    local = topk_ids.reshape(-1).to(torch.int64) - first_expert
    keep = (local >= 0) & (local < num_local)
    if valid is not None:
        keep &= valid.to(torch.bool).repeat_interleave(k)
    key = torch.where(keep, local, num_local)  # num_local collects everything not computed here
    counts = torch.zeros(num_local + 1, dtype=torch.int64, device=device)
    counts.scatter_add_(0, key, torch.ones_like(key))
    counts = counts[:num_local]
    padded = (counts + block_m - 1) // block_m * block_m
    padded_end = padded.cumsum(0)
    start = counts.cumsum(0) - counts  # first sorted position of each expert, unpadded
    order = torch.argsort(key, stable=True)
    sorted_key = key[order]
    kept = sorted_key < num_local
    e = sorted_key.clamp(max=num_local - 1)
    rank = torch.arange(n, device=device) - start[e]
    dest = torch.where(kept, padded_end[e] - padded[e] + rank, size)
    sorted_ids = torch.full((size + 1,), n, dtype=torch.int32, device=device)
    sorted_ids.scatter_(0, dest, order.to(torch.int32))
    block_start = torch.arange(max_blocks, device=device) * block_m
    block_expert = torch.searchsorted(padded_end, block_start, right=True)
    block_expert = torch.where(block_expert < num_local, block_expert, -1).to(torch.int32)
    return sorted_ids[:size], block_expert, padded_end[-1:].to(torch.int32)
