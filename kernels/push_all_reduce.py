"""A latency-bound all-reduce over GPUs that map each other's memory (symmetric memory over NVLink): each rank
pushes its rows into every peer's buffer and flags them, then sums what the peers pushed into its own; optionally
followed, in the same kernel, by the residual add and RMSNorm that come next in a decoder layer. The same kernel
gathers rows and reduce-scatters them (MODE), DP attention's exchanges around the MLP (push_dp_exchange.py).

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
may launch different grids: rows, not programs, pair up. The gather and the reduce-scatter keep this protocol: every
rank pushes every row r < M to every peer and awaits every peer's row r in each call (M, the rows a rank, is the same
on every rank; a rank's rows past its own count go as zeros, marked as padding), so the argument holds for them too.
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
    flag_ptrs: torch.Tensor  # int64 [world]: each rank's flags, int32 [3, world, max_rows] zeroed before first use:
    # [0] the flags, [1:] a GATHER's row marks by slot
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


# What a launch of _push_kernel does (MODE): the all-reduce, or DP attention's two exchanges (push_dp_exchange.py).
SUM = tl.constexpr(0)  # every rank's rows summed, on every rank
GATHER = tl.constexpr(1)  # every rank's rows side by side, on every rank
SCATTER_SUM = tl.constexpr(2)  # rank p gets the sum of every rank's block p // GROUP of rows


# M (the rows) and count change from step to step: not specialised on (==1, %16), so no new variant compiles mid-run.
@triton.jit(do_not_specialize=["M", "count"])
def _push_kernel(x_ptr, keep_ptr, data_ptrs, flag_ptrs, epoch_ptr, res_ptr, w_ptr, y_ptr, h_ptr, kept_ptr, M, count,
                 H, stride_x, stride_r, stride_y, stride_h, eps, rank, WORLD: tl.constexpr, MAX_ROWS: tl.constexpr,
                 ROW_STRIDE: tl.constexpr, MODE: tl.constexpr, GROUP: tl.constexpr, NORM: tl.constexpr,
                 TOKEN_VALID: tl.constexpr, BLOCK_H: tl.constexpr, PDL: tl.constexpr):
    """Row r (< M) of every rank, pushed and awaited as the module docstring says, then by MODE:
    - SUM: x [M, H]; y [M, H] the rows' sum over the ranks (count == M);
    - GATHER: x [count, H], rows count..M-1 taken as zeros; y [WORLD * M, H] with rank s's row r at s * M + r, and
      kept [WORLD * M] (uint8) whether that row is real: r < count on rank s (and, with TOKEN_VALID, keep[r] there);
    - SCATTER_SUM: x [WORLD // GROUP * M, H], block b (rows b * M ..) meant for ranks b * GROUP .. b * GROUP + GROUP -
      1; y [count, H] the sum over the ranks of their block rank // GROUP's first count rows.
    With NORM (not GATHER) h = sum + residual goes into h and rms_norm(h) * w into y. A program takes rows pid, pid +
    programs, ...: it pushes them all before it waits on any."""
    pdl_enter(PDL)
    offs = tl.arange(0, BLOCK_H)
    mask = offs < H
    dtype = x_ptr.dtype.element_ty
    kept_at = WORLD * MAX_ROWS  # a GATHER's row marks [2, WORLD, MAX_ROWS] follow the flags in their allocation
    for row in range(tl.program_id(0), M, tl.num_programs(0)):
        r64 = tl.cast(row, tl.int64)
        epoch = _next_epoch(tl.load(epoch_ptr + row))
        slot = ((epoch % 2) * WORLD + rank) * MAX_ROWS + row
        if MODE != SCATTER_SUM:
            x = tl.load(x_ptr + r64 * stride_x + offs, mask=tl.where(r64 < count, mask, False), other=0.0)
        if MODE == GATHER:
            keep = _kept_here(keep_ptr, row, count, TOKEN_VALID)
        for peer in tl.static_range(WORLD):
            if peer != rank:
                if MODE == SCATTER_SUM:
                    x = tl.load(x_ptr + tl.cast(peer // GROUP * M + row, tl.int64) * stride_x + offs, mask=mask)
                peer_data = _slots(data_ptrs, peer, dtype)
                tl.store(peer_data + slot.to(tl.int64) * ROW_STRIDE + offs, x, mask=mask)
                if MODE == GATHER:
                    peer_flags = tl.load(flag_ptrs + peer).to(tl.pointer_type(tl.int32))
                    tl.store(peer_flags + kept_at + slot, keep)
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
                if MODE == SCATTER_SUM:
                    own = tl.cast(rank // GROUP * M + row, tl.int64)
                    acc += tl.load(x_ptr + own * stride_x + offs, mask=mask, other=0.0).to(tl.float32)
                elif MODE == GATHER:
                    part = tl.load(x_ptr + r64 * stride_x + offs, mask=tl.where(r64 < count, mask, False), other=0.0)
                    at = tl.cast(src * M + row, tl.int64)
                    tl.store(y_ptr + at * stride_y + offs, part, mask=mask)
                    tl.store(kept_ptr + at, _kept_here(keep_ptr, row, count, TOKEN_VALID).to(tl.uint8))
                else:
                    acc += tl.load(x_ptr + r64 * stride_x + offs, mask=mask, other=0.0).to(tl.float32)
            else:
                ahead = _next_epoch(epoch)
                seen = tl.atomic_add(own_flags + src * MAX_ROWS + row, 0, sem="acquire", scope="sys")
                while (seen != epoch) & (seen != ahead):
                    seen = tl.atomic_add(own_flags + src * MAX_ROWS + row, 0, sem="acquire", scope="sys")
                tl.debug_barrier()  # the other threads read only after the acquire
                slot = ((epoch % 2) * WORLD + src) * MAX_ROWS + row
                part = tl.load(own_data + slot.to(tl.int64) * ROW_STRIDE + offs, mask=mask, other=0.0,
                               cache_modifier=".cg")
                if MODE == GATHER:
                    at = tl.cast(src * M + row, tl.int64)
                    tl.store(y_ptr + at * stride_y + offs, part, mask=mask)
                    keep = tl.load(own_flags + kept_at + slot, cache_modifier=".cg")
                    tl.store(kept_ptr + at, keep.to(tl.uint8))
                else:
                    acc += part.to(tl.float32)
        tl.store(epoch_ptr + row, epoch)
        if MODE != GATHER:
            if row < count:
                total = acc.to(dtype)
                if NORM:
                    add_rms_norm_row(total, r64, offs, mask, res_ptr, w_ptr, y_ptr, h_ptr, stride_r, stride_y,
                                     stride_h, H, eps, True)
                else:
                    tl.store(y_ptr + r64 * stride_y + offs, total, mask=mask)


@triton.jit
def _kept_here(keep_ptr, row, count, TOKEN_VALID: tl.constexpr):
    """1 where this rank's row is real (below count and, with TOKEN_VALID, marked in keep), else 0 (int32)."""
    live = tl.cast(row, tl.int32) < count  # (a tensor in the interpreter too, where row is a Python int)
    real = tl.where(live, 1, 0)
    if TOKEN_VALID:
        real = real * tl.load(keep_ptr + row, mask=live, other=0).to(tl.int32)
    return real


# Programs of a kernel variant an SM holds at once, by (device, world, mode, norm, token_valid, BLOCK_H, warps, dtype):
# learned from the variant's first launch (which takes one an SM) or its precompile. 2 x H200, 256 rows (2-byte
# traffic): 15.2 us as many as fit, 15.4 two an SM, 17.7 one.
_RESIDENT: dict[tuple, int] = {}
# Blocks an SM holds at most whatever their size: 16 on sm_75 / sm_86, 24 on sm_89, 32 on sm_80 / sm_90; the least.
MAX_BLOCKS_PER_SM = 16
# The variants (mode, norm, token_valid) each use of the buffers launches: precompile_push builds them all.
VARIANTS = {int(SUM.value): ((False, False), (True, False)), int(GATHER.value): ((False, False), (False, True)),
            int(SCATTER_SUM.value): ((False, False), (True, False))}


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


def precompile_push(peers: PushPeers, dtype: torch.dtype, width: int, device: torch.device, mode: int,
                    group: int = 1) -> None:
    """Compile the kernel's variants for one use of the buffers (`mode`: SUM, GATHER or SCATTER_SUM; `group` as
    push_reduce_scatter takes it) for rows of `width` in `dtype` before any call: a GPU or Triton that cannot build
    it says so here, where the caller can still keep its fallback, and every variant's programs an SM (_RESIDENT)
    are known from its first launch on."""
    block_h, num_warps = rms_norm_launch(width)
    for norm, token_valid in VARIANTS[mode]:
        compiled = _push_kernel.warmup(
            dtype, torch.uint8, torch.int64, torch.int64, torch.int32, dtype, dtype, dtype, dtype, torch.uint8, 2, 2,
            width, width, width, width, width, 1e-6, peers.rank, WORLD=peers.world, MAX_ROWS=peers.max_rows,
            ROW_STRIDE=peers.row_stride, MODE=mode, GROUP=group, NORM=norm, TOKEN_VALID=token_valid, BLOCK_H=block_h,
            num_warps=num_warps, grid=(1,), **pdl_args(device))
        compiled._init_handles()  # loads it, as a launch would: its registers are known from then on
        variant = (device, peers.world, mode, norm, token_valid, block_h, num_warps, dtype)
        _RESIDENT[variant] = _resident_per_sm(compiled, device)


def launch_push(mode: int, x2: torch.Tensor, peers: PushPeers, rows: int, count: int, y: torch.Tensor,
                keep: torch.Tensor | None = None, kept: torch.Tensor | None = None, group: int = 1,
                residual: torch.Tensor | None = None, weight: torch.Tensor | None = None, h: torch.Tensor | None = None,
                eps: float = 0.0, programs_per_sm: int | None = None) -> None:
    """One _push_kernel launch over `rows` rows a rank (its M) of 2-D tensors, as its docstring says; the callers
    (push_all_reduce here, push_dp_exchange.py) check the shapes. `programs_per_sm` is for tuning runs
    (tests/gpu/bench_all_reduce.py); by default as many as an SM holds at once (_resident_per_sm), one on a
    variant's first launch, which measures it."""
    H = x2.shape[-1]
    norm, token_valid = weight is not None, keep is not None
    block_h, num_warps = rms_norm_launch(H)
    # No more programs than the GPU holds at once, so that none waits on a peer's program that waits, in turn, for
    # this GPU to schedule one of ours. (Ranks may launch different grids: rows, not programs, pair up.)
    variant = (x2.device, peers.world, mode, norm, token_valid, block_h, num_warps, x2.dtype)
    per_sm = programs_per_sm or _RESIDENT.get(variant, 1)
    programs = min(rows, per_sm * _num_sms(x2.device))
    r2 = residual if norm else y  # unused without the norm
    h = h if norm else y
    compiled = _push_kernel[(programs,)](
        x2, keep if token_valid else y, peers.data_ptrs, peers.flag_ptrs, peers.epochs, r2, weight if norm else y, y,
        h, kept if kept is not None else y, rows, count, H, x2.stride(0), r2.stride(0), y.stride(0), h.stride(0),
        float(eps), peers.rank, WORLD=peers.world, MAX_ROWS=peers.max_rows, ROW_STRIDE=peers.row_stride, MODE=mode,
        GROUP=group, NORM=norm, TOKEN_VALID=token_valid, BLOCK_H=block_h, num_warps=num_warps,
        **pdl_args(x2.device))
    if variant not in _RESIDENT and x2.is_cuda and compiled is not None:
        _RESIDENT[variant] = _resident_per_sm(compiled, x2.device)


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
    the group must make the same calls with the same shapes (push_all_reduce_supports must hold)."""
    assert push_all_reduce_supports(x, peers), (tuple(x.shape), peers.max_rows, peers.row_stride)
    x2 = x.view(-1, x.shape[-1])
    rows, H = x2.shape
    y = torch.empty_like(x2)
    norm = weight is not None
    if norm:
        assert residual is not None and residual.shape == x.shape and weight.shape == (H,), "norm needs both"
    h = torch.empty_like(x2) if norm else None
    launch_push(int(SUM.value), x2, peers, rows, rows, y, residual=residual.reshape(rows, H) if norm else None,
                weight=weight, h=h, eps=eps, programs_per_sm=programs_per_sm)
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
