"""RMSNorm over the last dimension, optionally fused with the residual add that precedes it."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .pdl import pdl_args, pdl_enter


@triton.jit
def _rms_norm_kernel(
    x_ptr,
    res_ptr,
    w_ptr,
    y_ptr,
    h_ptr,
    stride_x_outer,  # x is [rows // inner, inner, H] with these two strides (a strided view needs no copy)
    stride_x,
    inner,
    stride_r,
    stride_y,
    stride_h,
    H,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK_H: tl.constexpr,
    PDL: tl.constexpr,
):
    pdl_enter(PDL)
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK_H)
    mask = offs < H
    x = tl.load(x_ptr + (row // inner) * stride_x_outer + (row % inner) * stride_x + offs, mask=mask, other=0.0)
    add_rms_norm_row(x, row, offs, mask, res_ptr, w_ptr, y_ptr, h_ptr, stride_r, stride_y, stride_h, H, eps,
                     HAS_RESIDUAL)


@triton.jit
def add_rms_norm_row(x, row, offs, mask, res_ptr, w_ptr, y_ptr, h_ptr, stride_r, stride_y, stride_h, H, eps,
                     HAS_RESIDUAL: tl.constexpr):
    """One row's (residual add and) RMSNorm from its loaded values x [BLOCK_H] in the activation dtype: h = x +
    residual stored at h_ptr (HAS_RESIDUAL), then the norm of h (or x) at y_ptr. Shared with the all-reduce that
    ends in the norm (push_all_reduce.py), so the two give the same bits under the same BLOCK_H and num_warps."""
    if HAS_RESIDUAL:
        r = tl.load(res_ptr + row * stride_r + offs, mask=mask, other=0.0)
        # The new residual is stored in the activation dtype; normalise exactly what was stored.
        h = (x.to(tl.float32) + r.to(tl.float32)).to(x.dtype)
        tl.store(h_ptr + row * stride_h + offs, h, mask=mask)
        x = h
    y = rms_norm_values(x, offs, mask, w_ptr, H, eps)
    tl.store(y_ptr + row * stride_y + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def rms_norm_values(x, offs, mask, w_ptr, H, eps):
    """rms_norm(x) * w of one row's loaded values x [BLOCK_H] (zero past H), in fp32: every kernel that norms a row
    computes it here, so that under the same BLOCK_H and num_warps (rms_norm_launch) they give the same bits."""
    xf = x.to(tl.float32)
    var = tl.sum(xf * xf, axis=0) / H
    rstd = 1.0 / tl.sqrt(var + eps)
    w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    return xf * rstd * w


def rms_norm_launch(H: int) -> tuple[int, int]:
    """(BLOCK_H, num_warps) of a row's norm over H features: the same for every kernel that ends in it, whose
    reduction order (and so whose bits) they fix."""
    block_h = triton.next_power_of_2(H)
    return block_h, min(max(block_h // 256, 1), 16)


def rms_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    residual: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm of x [..., H] with weight [H]; fp32 math, output in x.dtype (new tensors).

    With ``residual`` (same shape as x) computes ``h = x + residual`` and returns
    ``(rms_norm(h), h)``; h is the residual stream for the next layer.
    """
    H = x.shape[-1]
    assert weight.shape == (H,), f"weight {tuple(weight.shape)} does not match hidden size {H}"
    if x.dim() == 3 and residual is None and x.stride(-1) == 1:
        # Per-head norms (Qwen3's q/k norm) get [T, heads, D] views of the fused qkv output: read them
        # through both strides rather than copying them into a contiguous tensor first.
        x2, (outer, stride_x, inner) = x, (x.stride(0), x.stride(1), x.shape[1])
    else:
        x2 = x.reshape(-1, H)
        if x2.stride(-1) != 1:
            x2 = x2.contiguous()
        outer, stride_x, inner = x2.stride(0), x2.stride(0), 1
    rows = x2.numel() // H
    y = torch.empty((rows, H), dtype=x.dtype, device=x.device)
    if residual is not None:
        assert residual.shape == x.shape, "residual must have the shape of x"
        r2 = residual.reshape(-1, H)
        if r2.stride(-1) != 1:
            r2 = r2.contiguous()
        h = torch.empty((rows, H), dtype=x.dtype, device=x.device)
    else:
        r2, h = y, y  # unused placeholders
    T = rows
    if T > 0:
        BLOCK_H, num_warps = rms_norm_launch(H)
        _rms_norm_kernel[(T,)](
            x2,
            r2,
            weight.contiguous(),
            y,
            h,
            outer,
            stride_x,
            inner,
            r2.stride(0),
            y.stride(0),
            h.stride(0),
            H,
            float(eps),
            HAS_RESIDUAL=residual is not None,
            BLOCK_H=BLOCK_H,
            num_warps=num_warps,
            **pdl_args(x2.device),
        )
    y = y.view(x.shape)
    if residual is None:
        return y
    return y, h.view(x.shape)


def rms_norm_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    residual: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Plain-PyTorch reference for :func:`rms_norm`."""
    h = None
    if residual is not None:
        h = (x.float() + residual.float()).to(x.dtype)
        x = h
    xf = x.float()
    rstd = torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)
    y = (xf * rstd * weight.float()).to(x.dtype)
    return y if h is None else (y, h)
