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
    """`parts` on `device` in one copy, each converted to `dtype`: views of one buffer, each starting
    ALIGN_BYTES-aligned.

    The alignment is not for speed alone: a kernel handed a view whose offset is misaligned in one step and
    aligned in the next (the offsets follow the batch's sizes) would compile a second variant in the middle
    of a run.
    """
    return upload_typed([np.asarray(p, dtype=dtype).reshape(-1) for p in parts], device)


def upload_typed(parts: list[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """1-D `parts`, each keeping its own dtype, on `device` in one copy: typed views of one byte buffer, each
    starting ALIGN_BYTES-aligned (see upload_packed), so no conversion runs on the device."""
    raw = [np.ascontiguousarray(p).reshape(-1).view(np.uint8) for p in parts]
    padded = [-(-r.size // ALIGN_BYTES) * ALIGN_BYTES for r in raw]
    flat = np.zeros(max(sum(padded), ALIGN_BYTES), dtype=np.uint8)
    at = 0
    for r, width in zip(raw, padded):
        flat[at:at + r.size] = r
        at += width
    buffer = to_device(flat, device)
    views, at = [], 0
    for part, r, width in zip(parts, raw, padded):
        views.append(buffer[at:at + r.size].view(_TORCH_DTYPES[np.dtype(part.dtype)]))
        at += width
    return views


_TORCH_DTYPES = {np.dtype(n): getattr(torch, n) for n in ("float32", "float64", "int32", "int64", "uint8", "bool")}
