"""Asking L2 for the next kernel's weights while a latency-bound kernel leaves HBM idle (Hopper's bulk prefetch).

At small decode batches attention reads a few MB of KV cache in ~7 us of dependent loads, while HBM could move ~30 MB
in that time; the output projection after it then streams its weights from HBM. A launch given `prefetch_plan`'s
arguments splits a weight tensor's bytes over its programs, and each program's threads issue one
`cp.async.bulk.prefetch.L2.global` each for their slice, after the PDL wait (before it, the kernel ahead would
still be streaming its own weights through L2). The instruction is a hint with no result and no ordering: nothing
waits for it, and a slice that is evicted before use is read again from HBM, so the numbers never change.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

# Bulk prefetches take whole 16-byte units at 16-byte aligned addresses.
_UNIT = 16


@functools.cache
def _device_has_bulk_prefetch(index: int) -> bool:
    return torch.cuda.get_device_capability(index)[0] >= 9


def prefetch_supported(device: torch.device) -> bool:
    """Whether kernels on this device can issue bulk L2 prefetches: CUDA, compute capability >= 9.0 (never under the
    CPU interpreter, which runs no PTX)."""
    return device.type == "cuda" and _device_has_bulk_prefetch(
        device.index if device.index is not None else torch.cuda.current_device())


def prefetch_sizes(nbytes: int, programs: int, threads: int, max_bytes: int) -> tuple[int, int]:
    """(bytes asked for, bytes a thread): the first min(nbytes, max_bytes) bytes in whole 16-byte units, over
    programs * threads slices of whole units (the last ones short or empty)."""
    nbytes = min(nbytes, max_bytes) // _UNIT * _UNIT
    return nbytes, triton.cdiv(triton.cdiv(nbytes, programs * threads), _UNIT) * _UNIT


def prefetch_plan(weight: torch.Tensor | None, programs: int, threads: int, max_bytes: int,
                  placeholder: torch.Tensor) -> tuple[torch.Tensor, int, int, bool]:
    """(pointer, bytes, bytes a thread, PREFETCH) for a launch of `programs` programs of `threads` threads that asks
    L2 for the first max_bytes of weight's storage; PREFETCH False (placeholder pointer, nothing issued) without a
    weight, on a device without bulk prefetch, or for a weight that is not one contiguous 16-byte aligned block."""
    if (weight is None or programs <= 0 or max_bytes < _UNIT or not prefetch_supported(weight.device)
            or not weight.is_contiguous() or weight.data_ptr() % _UNIT):
        return placeholder, 0, 0, False
    nbytes, per_thread = prefetch_sizes(weight.numel() * weight.element_size(), programs, threads, max_bytes)
    return weight, nbytes, per_thread, nbytes > 0


@triton.jit
def prefetch_l2(base_ptr, nbytes, per_thread, program, THREADS: tl.constexpr, PREFETCH: tl.constexpr):
    """Program number `program` of the launch asks L2 for its slice of the nbytes at base_ptr: thread t of it for
    [(program * THREADS + t) * per_thread, + per_thread), cut at nbytes (prefetch_plan sizes the slices); THREADS
    is the launch's num_warps * 32. A no-op unless PREFETCH."""
    if PREFETCH:
        start = program.to(tl.int64) * per_thread * THREADS
        base = (base_ptr.to(tl.pointer_type(tl.int8)) + start).to(tl.uint64, bitcast=True)
        # Thread t: its offset t * per_thread past this program's start, and the bytes left there; one prefetch of
        # min(per_thread, left) bytes where any are left. The result register only keeps the statement alive.
        left = (nbytes - start).to(tl.int64)
        tl.inline_asm_elementwise(
            asm="""{
            .reg .pred has;
            .reg .u32 t;
            .reg .s64 off, rest;
            .reg .u64 addr;
            .reg .u32 size;
            mov.u32 t, %tid.x;
            mul.wide.u32 off, t, $3;
            sub.s64 rest, $2, off;
            setp.gt.s64 has, rest, 0;
            min.s64 rest, rest, $4;
            cvt.u32.s64 size, rest;
            add.u64 addr, $1, off;
            @has cp.async.bulk.prefetch.L2.global [addr], size;
            mov.u32 $0, 0;
            }""",
            constraints="=r,l,l,r,l", args=[base, left, per_thread.to(tl.uint32), per_thread.to(tl.int64)],
            dtype=tl.int32, is_pure=False, pack=1)
