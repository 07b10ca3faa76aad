"""A latency-bound all-reduce over GPUs that map each other's memory (symmetric memory over NVLink): each rank
pushes its rows into every peer's buffer and flags them, then sums what the peers pushed into its own; optionally
followed, in the same kernel, by the residual add and RMSNorm that come next in a decoder layer.

Why push: PyTorch's one-shot all-reduce waits for the peers before and after it reads their buffers, two round
trips over NVLink a call. Here a rank's stores travel one way, and the only wait is for the peers' flags, which
they raise as soon as their rows are out. At tensor-parallel decode the all-reduce sits between o_proj or
down_proj and an RMSNorm; ending in the norm saves that kernel too.

Protocol, per row r (its slots and flags are row r's alone, whichever program takes it):
- row r's epoch is the one after epochs[r] (1, 2, ..., EPOCH_WRAP, then 1 again), counted on this rank's own device
  memory (no host value, so CUDA graphs replay it); every rank runs the same launches, so a row's epoch is the same
  on every rank.
- its program stores it into each peer's data slot [epoch % 2][this rank][r], then (after a CTA barrier) writes the
  epoch into the peer's flag [this rank][r] with release semantics at system scope;
- once all its rows are out, it waits until each peer's flag in its own memory is the row's epoch or the next
  (acquire, system scope; a fast peer may be one call ahead, never two), reads their rows (L2 only: another GPU
  wrote them) and sums all ranks' rows in rank order in fp32, so every rank gets the same bits.
Two slots a row suffice: a rank can push row r's epoch e + 2 only after its epoch e + 1 saw the peer's flag e + 1,
which the peer raises in a later kernel than the one in which it read epoch e's slot. Epochs wrap (EPOCH_WRAP is
even, so the slots still alternate) rather than overflow: a row all-reduced 64 times a step at 100 steps a second
would pass 2^31 in four days. A program never waits before all its rows are pushed, and a launch has no more
programs than the GPU holds at once (_resident_per_sm), so no wait depends on a program not yet scheduled. Ranks
may launch different grids: rows, not programs, pair up.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .decode_attention import _num_sms
from .pdl import pdl_args, pdl_enter
from .rmsnorm import add_rms_norm_row, rms_norm_launch, rms_norm_ref


class PushPeers(NamedTuple):
    """One rank's view of a group's push buffers (made by spmd_infer/parallel/push_all_reduce.py)."""

    data_ptrs: torch.Tensor  # int64 [world]: each rank's data buffer [2, world, max_rows, row_stride] (this rank's too)
    flag_ptrs: torch.Tensor  # int64 [world]: each rank's flags, int32 [world, max_rows], zeroed before first use
    epochs: torch.Tensor  # int32 [max_rows] on this rank: each row's last epoch, zeroed before first use
    rank: int
    world: int
    max_rows: int  # rows a launch may have
    row_stride: int  # elements a row's slot holds: the widest row a launch may have


# The last epoch before they start again from 1 (flags start at 0, which no epoch is). Even: slots keep alternating.
EPOCH_WRAP = tl.constexpr(1 << 30)


@triton.jit
def _slots(data_ptrs, rank, dtype: tl.constexpr):
    """Rank `rank`'s data slots as a pointer, said to be 16-byte aligned (an allocation's start): with a slot's
    offset (a multiple of ROW_STRIDE) Triton can then move 16 bytes an instruction, where an address read from
    memory would leave it 2 (bf16) at a time."""
    return tl.multiple_of(tl.load(data_ptrs + rank).to(tl.pointer_type(dtype)), 16)


@triton.jit
def _next_epoch(epoch):
    return tl.where(epoch >= EPOCH_WRAP, 1, epoch + 1)


# M (the rows) changes from step to step: not specialised on (==1, %16), so no new variant compiles mid-run.
@triton.jit(do_not_specialize=["M"])
def _push_all_reduce_kernel(x_ptr, data_ptrs, flag_ptrs, epoch_ptr, res_ptr, w_ptr, y_ptr, h_ptr, M, H, stride_x,
                            stride_r, stride_y, stride_h, eps, rank, WORLD: tl.constexpr, MAX_ROWS: tl.constexpr,
                            ROW_STRIDE: tl.constexpr, NORM: tl.constexpr, BLOCK_H: tl.constexpr,
                            PDL: tl.constexpr):
    """Each row's sum over the ranks, into y (NORM=False) or, with NORM, h = sum + residual into h and rms_norm(h) *
    w into y. A program takes rows pid, pid + programs, ...: it pushes them all before it waits on any. The module
    docstring gives the protocol."""
    pdl_enter(PDL)
    offs = tl.arange(0, BLOCK_H)
    mask = offs < H
    dtype = x_ptr.dtype.element_ty
    for row in range(tl.program_id(0), M, tl.num_programs(0)):
        r64 = tl.cast(row, tl.int64)
        epoch = _next_epoch(tl.load(epoch_ptr + row))
        x = tl.load(x_ptr + r64 * stride_x + offs, mask=mask, other=0.0)
        sent = (((epoch % 2) * WORLD + rank) * MAX_ROWS + row).to(tl.int64) * ROW_STRIDE
        for peer in tl.static_range(WORLD):
            if peer != rank:
                peer_data = _slots(data_ptrs, peer, dtype)
                tl.store(peer_data + sent + offs, x, mask=mask)
    # Every thread's stores are issued before one thread's releases publish them (a release is cumulative). All of
    # a program's rows are in flight before the first release, which waits for them: the others find them done.
    tl.debug_barrier()
    for row in range(tl.program_id(0), M, tl.num_programs(0)):
        epoch = _next_epoch(tl.load(epoch_ptr + row))
        for peer in tl.static_range(WORLD):
            if peer != rank:
                peer_flags = tl.load(flag_ptrs + peer).to(tl.pointer_type(tl.int32))
                tl.atomic_xchg(peer_flags + rank * MAX_ROWS + row, epoch, sem="release", scope="sys")
    own_data = _slots(data_ptrs, rank, dtype)
    own_flags = tl.load(flag_ptrs + rank).to(tl.pointer_type(tl.int32))
    for row in range(tl.program_id(0), M, tl.num_programs(0)):
        r64 = tl.cast(row, tl.int64)
        epoch = _next_epoch(tl.load(epoch_ptr + row))
        acc = tl.zeros([BLOCK_H], tl.float32)
        for src in tl.static_range(WORLD):
            if src == rank:
                acc += tl.load(x_ptr + r64 * stride_x + offs, mask=mask, other=0.0).to(tl.float32)
            else:
                ahead = _next_epoch(epoch)
                seen = tl.atomic_add(own_flags + src * MAX_ROWS + row, 0, sem="acquire", scope="sys")
                while (seen != epoch) & (seen != ahead):
                    seen = tl.atomic_add(own_flags + src * MAX_ROWS + row, 0, sem="acquire", scope="sys")
                tl.debug_barrier()  # the other threads read only after the acquire
                got = (((epoch % 2) * WORLD + src) * MAX_ROWS + row).to(tl.int64) * ROW_STRIDE
                part = tl.load(own_data + got + offs, mask=mask, other=0.0, cache_modifier=".cg")
                acc += part.to(tl.float32)
        tl.store(epoch_ptr + row, epoch)
        total = acc.to(dtype)
        if NORM:
            add_rms_norm_row(total, r64, offs, mask, res_ptr, w_ptr, y_ptr, h_ptr, stride_r, stride_y,
                             stride_h, H, eps, True)
        else:
            tl.store(y_ptr + r64 * stride_y + offs, total, mask=mask)


# Programs of a kernel variant an SM holds at once, by (device, world, norm, BLOCK_H, warps, dtype): learned from the
# variant's first launch (which takes one an SM). 2 x H200, 256 rows: 15.2 us as many as fit, 15.4 two an SM, 17.7 one.
_RESIDENT: dict[tuple, int] = {}
# Blocks an SM holds at most whatever their size: 16 on sm_75 / sm_86, 24 on sm_89, 32 on sm_80 / sm_90; the least.
MAX_BLOCKS_PER_SM = 16


def _resident_per_sm(compiled, device: torch.device) -> int:
    """How many programs of a compiled kernel fit on one SM together: its threads, registers (allocated 8 a thread at
    a time) and shared memory (1 KiB more a block, the driver's) against the SM's, and MAX_BLOCKS_PER_SM; at least
    one."""
    props = torch.cuda.get_device_properties(device)
    threads = 32 * compiled.metadata.num_warps
    by_threads = props.max_threads_per_multi_processor // threads
    regs = -(-compiled.n_regs // 8) * 8 * threads
    by_regs = triton.runtime.driver.active.utils.get_device_properties(device.index)["max_num_regs"] // max(regs, 1)
    shared = compiled.metadata.shared
    by_shared = props.shared_memory_per_multiprocessor // (shared + 1024) if shared else by_threads
    return max(1, min(by_threads, by_regs, by_shared, MAX_BLOCKS_PER_SM))


def precompile_push_all_reduce(peers: PushPeers, dtype: torch.dtype, width: int, device: torch.device) -> None:
    """Compile the kernel for rows of `width` in `dtype`, with and without the norm, before any call: a GPU or
    Triton that cannot build it says so here, where the caller can still keep the one-shot kernel, and every
    variant's programs an SM (_RESIDENT) are known from its first launch on."""
    block_h, num_warps = rms_norm_launch(width)
    for norm in (False, True):
        compiled = _push_all_reduce_kernel.warmup(
            dtype, torch.int64, torch.int64, torch.int32, dtype, dtype, dtype, dtype, 2, width, width, width, width,
            width, 1e-6, peers.rank, WORLD=peers.world, MAX_ROWS=peers.max_rows, ROW_STRIDE=peers.row_stride,
            NORM=norm, BLOCK_H=block_h, num_warps=num_warps, grid=(1,), **pdl_args(device))
        compiled._init_handles()  # loads it, as a launch would: its registers are known from then on
        _RESIDENT[(device, peers.world, norm, block_h, num_warps, dtype)] = _resident_per_sm(compiled, device)


def push_all_reduce_supports(x: torch.Tensor, peers: PushPeers) -> bool:
    """Whether push_all_reduce takes x [..., H]: contiguous, 1 to max_rows rows of 1 to row_stride features."""
    if x.dim() == 0 or not x.is_contiguous() or not 0 < x.shape[-1] <= peers.row_stride:
        return False
    return 0 < x.numel() // x.shape[-1] <= peers.max_rows


def push_all_reduce(x: torch.Tensor, peers: PushPeers, residual: torch.Tensor | None = None,
                    weight: torch.Tensor | None = None, eps: float = 0.0,
                    programs_per_sm: int | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The sum of x over the group (a new tensor), or with `weight` (and `residual`, x's shape) the pair
    (rms_norm(sum + residual) * weight, sum + residual) as kernels/rmsnorm.py's rms_norm returns it. Every rank of
    the group must make the same calls with the same shapes (push_all_reduce_supports must hold).
    `programs_per_sm` is for tuning runs (tests/gpu/bench_all_reduce.py); by default as many as an SM holds at once
    (_resident_per_sm), one on a variant's first launch, which measures it."""
    assert push_all_reduce_supports(x, peers), (tuple(x.shape), peers.max_rows, peers.row_stride)
    x2 = x.view(-1, x.shape[-1])
    rows, H = x2.shape
    y = torch.empty_like(x2)
    norm = weight is not None
    if norm:
        assert residual is not None and residual.shape == x.shape and weight.shape == (H,), "norm needs both"
        r2 = residual.reshape(rows, H)
        h = torch.empty_like(x2)
    else:
        r2, h = y, y  # unused
    block_h, num_warps = rms_norm_launch(H)
    # No more programs than the GPU holds at once, so that none waits on a peer's program that waits, in turn, for
    # this GPU to schedule one of ours. (Ranks may launch different grids: rows, not programs, pair up.)
    variant = (x.device, peers.world, norm, block_h, num_warps, x.dtype)
    per_sm = programs_per_sm or _RESIDENT.get(variant, 1)
    programs = min(rows, per_sm * _num_sms(x.device))
    compiled = _push_all_reduce_kernel[(programs,)](
        x2, peers.data_ptrs, peers.flag_ptrs, peers.epochs, r2, weight if norm else y, y, h, rows, H, x2.stride(0),
        r2.stride(0), y.stride(0), h.stride(0), float(eps), peers.rank, WORLD=peers.world, MAX_ROWS=peers.max_rows,
        ROW_STRIDE=peers.row_stride, NORM=norm, BLOCK_H=block_h, num_warps=num_warps, **pdl_args(x.device))
    if variant not in _RESIDENT and x.is_cuda and compiled is not None:
        _RESIDENT[variant] = _resident_per_sm(compiled, x.device)
    if not norm:
        return y.view(x.shape)
    return y.view(x.shape), h.view(x.shape)


def push_all_reduce_ref(parts: list[torch.Tensor], residual: torch.Tensor | None = None,
                        weight: torch.Tensor | None = None,
                        eps: float = 0.0) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Plain-PyTorch reference for :func:`push_all_reduce`, given every rank's x in rank order: their fp32 sum in
    that order, rounded once to x's dtype, then (with `weight`) rms_norm_ref's residual add and norm."""
    total = torch.zeros_like(parts[0], dtype=torch.float32)
    for part in parts:
        total = total + part.float()
    total = total.to(parts[0].dtype)
    if weight is None:
        return total
    return rms_norm_ref(total, weight, eps, residual)
