"""A checkpoint tensor that reads only the slice a rank asks for, and a shape-checked copy into a parameter."""

from __future__ import annotations

import torch


class WeightError(ValueError):
    """A checkpoint that does not match the model: missing, unexpected or mis-shaped tensors."""


class CheckpointTensor:
    """Wraps a safetensors slice (or an in-memory tensor): `narrow` reads just that region from disk."""

    def __init__(self, name: str, source):
        self.name = name
        self._source = source
        self.shape = tuple(source.get_shape()) if hasattr(source, "get_shape") else tuple(source.shape)
        self.bytes_read = 0

    def read(self) -> torch.Tensor:
        return self._track(self._source[...] if hasattr(self._source, "get_shape") else self._source)

    def narrow(self, dim: int, start: int, length: int) -> torch.Tensor:
        if start + length > self.shape[dim]:
            raise WeightError(
                f"tensor {self.name!r} has shape {list(self.shape)}; this rank needs [{start}, {start + length}) "
                f"along dim {dim}: the checkpoint does not match the config (or the parallel layout)")
        index = tuple([slice(None)] * dim + [slice(start, start + length)])
        return self._track(self._source[index])

    def _track(self, t: torch.Tensor) -> torch.Tensor:
        self.bytes_read += t.numel() * t.element_size()
        return t


def copy_checked(dst: torch.Tensor, src: torch.Tensor, name: str) -> None:
    if tuple(dst.shape) != tuple(src.shape):
        raise WeightError(f"tensor {name!r}: checkpoint slice has shape {list(src.shape)}, the model expects "
                          f"{list(dst.shape)}; is config.json from the same checkpoint?")
    dst.data.copy_(src)
