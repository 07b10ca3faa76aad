"""RMSNorm with an optional fused residual add (the residual stream is carried between layers)."""

from __future__ import annotations

import torch
from spmd_kernels import rms_norm
from torch import nn

from ..parallel.comm import PartialSums, all_reduce_add_norm


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size), requires_grad=False)

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        # float32 statistics as transformers does, then back to the activation dtype before the scale.
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)

    def forward(self, x: torch.Tensor | PartialSums, residual: torch.Tensor | None = None):
        """rms_norm(x) * weight, or with `residual` (rms_norm(x + residual) * weight, x + residual). x may be a
        row-parallel layer's PartialSums: summed over its group first, in the same kernel where the group can."""
        if isinstance(x, PartialSums):
            if residual is not None:
                fused = all_reduce_add_norm(x, residual, self.weight, self.eps)
                if fused is not None:
                    return fused
            x = x.reduced()
        if x.is_cuda:
            return rms_norm(x, self.weight, self.eps, residual)  # Triton, residual add fused
        if residual is None:
            return self._norm(x)
        residual = x + residual
        return self._norm(residual), residual
