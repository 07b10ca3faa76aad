"""Programmatic dependent launch (PDL, Hopper and later): a kernel may be scheduled while the one before it ends.

A decode step at batch 1 is ~11 small kernels a layer; between two of them the GPU drains one grid, flushes its
writes and only then ramps up the next. With PDL the next grid is launched as soon as every program of the previous
one has started (or, after a kernel that does not signal, as its programs exit) and waits in `gdc_wait` for the
previous grid to complete and flush before it touches memory.

Every kernel of this package takes a `PDL` constexpr and starts with `pdl_enter(PDL)`; `pdl_args(device)` gives its
launch the matching keywords. The wait comes first in every program, before any load, store or early exit: a program
that exited without waiting could let this grid complete before its predecessor, and a third kernel waiting only on
this one would then read unfinished data. skinny_gemm, fp8_linear and moe_route's router kernel alone fetch a
weight tile before their wait (weights are never written by a predecessor). Asking L2 for more of their weight rows
there (`prefetch.global.L2`, up to 24 MiB a launch) was timed slower and removed (H200, session 19, commit 7ca0a78:
Llama-3-8B bs1 4.7 against 4.6 ms in bf16, 3.1 against 3.0 with float8 linear layers), and so was asking it from
decode attention's programs for o_proj's weights by bulk prefetch (session 34, commit fbefbff: bs1 4.5 -> 4.7 ms).

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
