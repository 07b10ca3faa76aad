"""Host arrays handed to the GPU without making the host wait for it (pinned staging for CUDA copies)."""

from __future__ import annotations

import numpy as np
import torch


def staged(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A CPU tensor holding `array` whose copy to `device` (with non_blocking=True) is truly asynchronous.

    A copy from pageable memory may wait for the GPU's queued work first, which would undo overlapped
    steps; pinned memory from PyTorch's caching host allocator avoids that, and the allocator keeps the
    block until the copy has read it, so the caller may reuse `array` at once.
    """
    t = torch.from_numpy(np.ascontiguousarray(array))
    return t.pin_memory() if device.type == "cuda" else t


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """`array` on `device` (the CPU tensor itself when device is the CPU)."""
    t = staged(array, device)
    return t.to(device, non_blocking=True) if device.type == "cuda" else t
