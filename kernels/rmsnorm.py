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
    stride_split,
    H,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    SPLITS: tl.constexpr,
    BLOCK_H: tl.constexpr,
    PDL: tl.constexpr,
):
    pdl_enter(PDL)
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK_H)
    mask = offs < H
    x_ptrs = x_ptr + (row // inner) * stride_x_outer + (row % inner) * stride_x + offs
    x = tl.load(x_ptrs, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        r = tl.load(res_ptr + row * stride_r + offs, mask=mask, other=0.0)
        if SPLITS > 0:  # x: fp32 partial sums of the projection before (rms_norm_partials)
            for s in tl.static_range(1, SPLITS):
                x += tl.load(x_ptrs + s * stride_split, mask=mask, other=0.0)
            x = x.to(r.dtype)  # the projection's output, rounded as a GEMM rounds its accumulator
        # The new residual is stored in the activation dtype; normalise exactly what was stored.
        h = (x.to(tl.float32) + r.to(tl.float32)).to(x.dtype)
        tl.store(h_ptr + row * stride_h + offs, h, mask=mask)
        x = h
    xf = x.to(tl.float32)
    var = tl.sum(xf * xf, axis=0) / H
    rstd = 1.0 / tl.sqrt(var + eps)
    w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = xf * rstd * w
    tl.store(y_ptr + row * stride_y + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


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
    if rows > 0:
        _launch(x2, r2, weight, y, h, outer, stride_x, inner, 0, H, eps, residual is not None, 0)
    y = y.view(x.shape)
    if residual is None:
        return y
    return y, h.view(x.shape)


def rms_norm_partials(parts: torch.Tensor, weight: torch.Tensor, eps: float,
                      residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """rms_norm(x, weight, eps, residual) where x is still a projection's fp32 partial sums over K splits,
    parts [splits, rows, H] (skinny_gemm.skinny_gemm_partials): x = their sum rounded to residual's dtype.
    Returns (rms_norm(h), h) with h = x + residual, both new [rows, H] tensors."""
    splits, rows, H = parts.shape
    assert parts.dtype == torch.float32 and parts.stride(-1) == 1, "parts: contiguous fp32 partial sums"
    assert residual.shape == (rows, H) and residual.stride(-1) == 1, "residual must be [rows, H] to match parts"
    assert weight.shape == (H,), f"weight {tuple(weight.shape)} does not match hidden size {H}"
    y = torch.empty((rows, H), dtype=residual.dtype, device=parts.device)
    h = torch.empty_like(y)
    if rows > 0:
        _launch(parts, residual, weight, y, h, parts.stride(1), parts.stride(1), 1, parts.stride(0), H, eps, True,
                splits)
    return y, h


def _launch(x, r, weight, y, h, outer, stride_x, inner, stride_split, H, eps, has_residual, splits) -> None:
    """One program per row; splits > 0: x holds that many fp32 partial sums per row, stride_split apart."""
    BLOCK_H = triton.next_power_of_2(H)
    num_warps = min(max(BLOCK_H // 256, 1), 16)
    _rms_norm_kernel[(y.shape[0],)](
        x, r, weight.contiguous(), y, h, outer, stride_x, inner, r.stride(0), y.stride(0), h.stride(0), stride_split,
        H, float(eps), HAS_RESIDUAL=has_residual, SPLITS=splits, BLOCK_H=BLOCK_H, num_warps=num_warps,
        **pdl_args(x.device))


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


def rms_norm_partials_ref(parts: torch.Tensor, weight: torch.Tensor, eps: float,
                          residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-PyTorch reference for :func:`rms_norm_partials`."""
    return rms_norm_ref(parts.sum(0).to(residual.dtype), weight, eps, residual)
