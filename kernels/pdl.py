"""Programmatic dependent launch (PDL, Hopper and later): a kernel may be scheduled while the one before it ends.

A decode step at batch 1 is ~11 small kernels a layer; between two of them the GPU drains one grid, flushes its
writes and only then ramps up the next. With PDL the next grid is launched as soon as every program of the previous
one has started (or, after a kernel that does not signal, as its programs exit) and waits in `gdc_wait` for the
previous grid to complete and flush before it touches memory.

Every kernel of this package takes a `PDL` constexpr and starts with `pdl_enter(PDL)`; `pdl_args(device)` gives its
launch the matching keywords. The wait comes first in every program, before any load, store or early exit: a program
that exited without waiting could let this grid complete before its predecessor, and a third kernel waiting only on
this one would then read unfinished data. skinny_gemm alone fetches a weight tile before its wait (weights are never
written by a predecessor).

On by default (SPMD_PDL=0 turns it off). Alone it is within noise (Llama-3-8B decode on an H200, CUDA graphs:
bs1 78.2 -> 78.7% MBU, bs64 77.9 -> 78.2%); it is what lets skinny_gemm beat cuBLAS on the small projections,
whose first weight tile then streams while the previous kernel drains (tests/gpu/run_skinny_small.sh: bs1
77.6 -> 79.7%). Three models agree with transformers with it on (tests/gpu/run_defaults_check.sh).
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

PDL_ON = os.environ.get("SPMD_PDL", "1") == "1"


@functools.cache
def _device_has_pdl(index: int) -> bool:
    return torch.cuda.get_device_capability(index)[0] >= 9


def pdl_enabled(device: torch.device) -> bool:
    """Whether kernels on this device use programmatic dependent launch: SPMD_PDL not 0, CUDA, compute capability
    >= 9."""
    return PDL_ON and device.type == "cuda" and _device_has_pdl(device.index if device.index is not None
                                                                 else torch.cuda.current_device())


def pdl_args(device: torch.device) -> dict:
    """Launch keywords for a kernel that starts with pdl_enter(PDL): its constexpr, and launch_pdl when enabled
    (never under the CPU interpreter, whose launcher knows no such option)."""
    return {"PDL": True, "launch_pdl": True} if pdl_enabled(device) else {"PDL": False}


@triton.jit
def pdl_enter(PDL: tl.constexpr):
    """First statement of a kernel: wait until the previous grid has completed and flushed its writes, then let the
    next grid be scheduled (it will wait in turn)."""
    if PDL:
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()


# Weight bytes a decode GEMM launch asks L2 to fetch before its PDL wait (prefetch_l2), MiB: while the kernels before
# it run (at batch 1 a norm or attention over a few MB of cache, mostly latency), the HBM streams the first part of
# every weight row this launch will read. Kept under the L2 (50 MB on H100 / H200) so that prefetched lines are
# still there when the program reaches them. SPMD_L2_PREFETCH_MB=0 turns it off.
L2_PREFETCH_MB = float(os.environ.get("SPMD_L2_PREFETCH_MB", "24"))
_LINE = tl.constexpr(128)  # bytes an L2 prefetch fetches


def l2_prefetch_row_bytes(rows: int, row_bytes: int, device: torch.device) -> int:
    """How many leading bytes of each of a launch's `rows` weight rows (of `row_bytes` each) its programs prefetch
    into L2 before their PDL wait: the whole row within L2_PREFETCH_MB a launch; 0 without PDL (nothing to overlap,
    and no inline PTX under the CPU interpreter)."""
    if L2_PREFETCH_MB <= 0 or rows <= 0 or not pdl_enabled(device):
        return 0
    return min(row_bytes, int(L2_PREFETCH_MB * 2**20) // rows)


@triton.jit
def prefetch_l2(row_ptrs, row_bytes, PDL: tl.constexpr, LINES: tl.constexpr = 8):
    """Ask L2 for the first `row_bytes` bytes of each row at row_ptrs (a tensor of row starts, any element type),
    a 128-byte line a `prefetch.global.L2`, LINES lines a row a trip. A hint: it holds no register and blocks
    nothing. Only with PDL (so on a GPU of compute capability 9.0+, never under the interpreter): called before
    pdl_enter, it overlaps the weight stream with the kernels this one waits for."""
    if PDL:
        rows = row_ptrs.to(tl.pointer_type(tl.int8))
        last = row_bytes - 1
        for start in range(0, row_bytes, _LINE * LINES):
            offs = tl.minimum(start + tl.arange(0, LINES) * _LINE, last)  # past the end: the last line again
            tl.inline_asm_elementwise("prefetch.global.L2 [$1];\n\tmov.u32 $0, 0;", "=r,l", [rows[:, None]
                                      + offs[None, :]], dtype=tl.int32, is_pure=False, pack=1)
