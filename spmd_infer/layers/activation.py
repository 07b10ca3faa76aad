"""SiLU-and-mul: the gated activation of Llama-style MLPs over the merged gate/up projection."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from spmd_kernels import silu_and_mul as silu_and_mul_triton


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    if x.is_cuda:
        return silu_and_mul_triton(x)
    gate, up = x.chunk(2, dim=-1)
    return F.silu(gate) * up
