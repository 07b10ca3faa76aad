"""RMSNorm with an optional fused residual add (the residual stream is carried between layers)."""

from __future__ import annotations

import torch
from spmd_kernels import rms_norm
from torch import nn

from ..parallel.comm import DeferredSums


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

    def forward(self, x: torch.Tensor | DeferredSums, residual: torch.Tensor | None = None):
        """rms_norm(x) * weight, or with `residual` (rms_norm(x + residual) * weight, x + residual). x may be sums left
        for this norm (a row-parallel layer's PartialSums, DP attention's ScatterSums): summed first, in the same
        kernel where their group can."""
        if not isinstance(x, torch.Tensor):
            if residual is not None:
                fused = x.add_norm(residual, self.weight, self.eps)
                if fused is not None:
                    return fused
            x = x.reduced()
        if x.is_cuda:
            return rms_norm(x, self.weight, self.eps, residual)  # Triton, residual add fused
        if residual is None:
            return self._norm(x)
        residual = x + residual
        return self._norm(residual), residual
