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


ALIGN_BYTES = 16  # Triton specialises pointer arguments on 16-byte alignment


def upload_packed(parts: list[np.ndarray], dtype, device: torch.device) -> list[torch.Tensor]:
    """`parts` on `device` in one copy: views of one buffer, each starting ALIGN_BYTES-aligned.

    The alignment is not for speed alone: a kernel handed a view whose offset is misaligned in one step and
    aligned in the next (the offsets follow the batch's sizes) would compile a second variant in the middle
    of a run.
    """
    per = ALIGN_BYTES // np.dtype(dtype).itemsize
    sizes = [len(p) for p in parts]
    padded = [-(-n // per) * per for n in sizes]
    flat = np.zeros(sum(padded), dtype=dtype)
    at = 0
    for part, n, width in zip(parts, sizes, padded):
        flat[at:at + n] = part
        at += width
    return [view[:n] for view, n in zip(to_device(flat, device).split(padded), sizes)]
