"""Gated SiLU for MLPs: silu(gate) * up, with gate and up packed side by side in one tensor."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .pdl import pdl_args, pdl_enter


@triton.jit
def _silu_and_mul_kernel(
    x_ptr,
    out_ptr,
    stride_x,
    stride_o,
    I,
    BLOCK: tl.constexpr,
    PDL: tl.constexpr,
):
    pdl_enter(PDL)
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < I
    gate = tl.load(x_ptr + row * stride_x + offs, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(x_ptr + row * stride_x + I + offs, mask=mask, other=0.0).to(tl.float32)
    y = gate / (1.0 + tl.exp(-gate)) * up
    tl.store(out_ptr + row * stride_o + offs, y.to(out_ptr.dtype.element_ty), mask=mask)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """x [..., 2*I] -> new tensor [..., I] = silu(x[..., :I]) * x[..., I:] (fp32 math, x.dtype out)."""
    two_i = x.shape[-1]
    assert two_i % 2 == 0, "last dimension must be even"
    inter = two_i // 2
    x2 = x.reshape(-1, two_i)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    out = torch.empty((x2.shape[0], inter), dtype=x.dtype, device=x.device)
    T = x2.shape[0]
    if T > 0 and inter > 0:
        BLOCK = min(triton.next_power_of_2(inter), 1024)
        grid = (T, triton.cdiv(inter, BLOCK))
        _silu_and_mul_kernel[grid](
            x2, out, x2.stride(0), out.stride(0), inter, BLOCK=BLOCK, num_warps=4,
            **pdl_args(x2.device),
        )
    return out.view(*x.shape[:-1], inter)


def silu_and_mul_ref(x: torch.Tensor) -> torch.Tensor:
    """Plain-PyTorch reference for :func:`silu_and_mul`."""
    gate, up = x.float().chunk(2, dim=-1)
    return (F.silu(gate) * up).to(x.dtype)
