"""RMSNorm with an optional fused residual add (the residual stream is carried between layers), its output
optionally rounded to float8 for the float8 linear layer it feeds."""

from __future__ import annotations

import torch
from spmd_kernels import rms_norm
from spmd_kernels.rmsnorm import rms_norm_quantized
from torch import nn

from .linear import RoundedRows


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

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        if x.is_cuda:
            return rms_norm(x, self.weight, self.eps, residual)  # Triton, residual add fused
        if residual is None:
            return self._norm(x)
        residual = x + residual
        return self._norm(residual), residual

    def rounded(self, x: torch.Tensor, residual: torch.Tensor | None, group: int):
        """forward(x, residual) on CUDA with its output rounded to float8 a token's `group` features at a time, in the
        same launch (LinearBase.takes_rounded_inputs says where): RoundedRows, with the new residual stream if
        `residual` is given."""
        rows = x.reshape(-1, x.shape[-1])
        q, scale, h = rms_norm_quantized(rows, self.weight, self.eps, group,
                                         None if residual is None else residual.reshape(rows.shape))
        out = RoundedRows(q, scale, x.dtype)
        return out if residual is None else (out, h.view(x.shape))
