"""Programmatic dependent launch (Hopper and later): a kernel may start while the one before it in the stream ends.

A decode step at batch 1 is ~10 small kernels a layer; between two of them the GPU drains one grid and ramps up the
next. With PDL the next grid is scheduled early, fetches what never depends on its predecessor (weights) and waits
in `gdc_wait` only before it reads that predecessor's output. Two sides take part:
- the waiting side (skinny_gemm) is launched with `launch_pdl=True` and calls `gdc_wait` before touching
  activations or its output buffer (that memory may still be in use by the predecessor);
- the triggering side (RMSNorm, SiLU-and-mul, the decode-attention reduce: the kernels that feed a projection) calls
  `gdc_launch_dependents` first thing, which lets a PDL-launched successor be scheduled at once. It changes nothing
  for a successor launched without PDL, which still waits for the whole grid.
"""

from __future__ import annotations

import functools
import os

import torch

# SPMD_PDL=0 turns both sides off (A/B timing on a GPU, or a driver that mishandles programmatic graph edges).
PDL_ON = os.environ.get("SPMD_PDL", "1") != "0"


@functools.cache
def _device_has_pdl(index: int) -> bool:
    return torch.cuda.get_device_capability(index)[0] >= 9


def pdl_enabled(device: torch.device) -> bool:
    """Whether kernels on this device use programmatic dependent launch: CUDA, compute capability 9.0 or later."""
    return PDL_ON and device.type == "cuda" and _device_has_pdl(device.index if device.index is not None
                                                                 else torch.cuda.current_device())
