"""RMSNorm over the last dimension, optionally fused with the residual add that precedes it, and optionally rounded
to float8 a token's `group` features at a time on the way out (the input of a float8 linear layer)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .pdl import pdl_args, pdl_enter
from .scaled_activations import _scale_groups, quantize_activations_ref


@triton.jit
def _rms_norm_kernel(
    x_ptr,
    res_ptr,
    w_ptr,
    y_ptr,
    h_ptr,
    scale_ptr,  # ROUND: the float32 scales [rows, ceil(H / GROUP)] (else unused)
    stride_x_outer,  # x is [rows // inner, inner, H] with these two strides (a strided view needs no copy)
    stride_x,
    inner,
    stride_r,
    stride_y,
    stride_h,
    stride_s,
    H,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK_H: tl.constexpr,
    ROUND: tl.constexpr,  # y in float8: each GROUP columns of a row over its largest magnitude / 448
    GROUP: tl.constexpr,  # ROUND: divides BLOCK_H
    PDL: tl.constexpr,
):
    pdl_enter(PDL)
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK_H)
    mask = offs < H
    x = tl.load(x_ptr + (row // inner) * stride_x_outer + (row % inner) * stride_x + offs, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        r = tl.load(res_ptr + row * stride_r + offs, mask=mask, other=0.0)
        # The new residual is stored in the activation dtype; normalise exactly what was stored.
        h = (x.to(tl.float32) + r.to(tl.float32)).to(x.dtype)
        tl.store(h_ptr + row * stride_h + offs, h, mask=mask)
        x = h
    xf = x.to(tl.float32)
    var = tl.sum(xf * xf, axis=0) / H
    rstd = 1.0 / tl.sqrt(var + eps)
    w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = xf * rstd * w
    if ROUND:
        # Rounded to x's dtype first, as the unrounded kernel stores it, so that this equals quantize_activations
        # over rms_norm's output bit for bit (columns past H are 0: no effect on a group's largest magnitude).
        y = y.to(x_ptr.dtype.element_ty).to(tl.float32)
        q, scale = _scale_groups(tl.reshape(y, (BLOCK_H // GROUP, GROUP)))
        tl.store(y_ptr + row * stride_y + offs, tl.reshape(q, (BLOCK_H,)).to(y_ptr.dtype.element_ty), mask=mask)
        groups = tl.arange(0, BLOCK_H // GROUP)
        tl.store(scale_ptr + row * stride_s + groups, scale, mask=groups * GROUP < H)
    else:
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
    y, _, h = _launch(x, weight, eps, residual, None)
    return y if residual is None else (y, h)


def rms_norm_quantized(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    group: int,
    residual: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """rms_norm(x, weight, eps, residual) [T, H] as quantize_activations(..., group) rounds it, in one launch:
    (float8 e4m3 values [T, H], float32 scales [T, ceil(H / group)], the new residual stream h, or None without
    ``residual``) for x [T, H]; group a power of two, 16 or more."""
    assert x.dim() == 2 and group & (group - 1) == 0 and group >= 16
    return _launch(x, weight, eps, residual, group)


def _launch(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None,
            group: int | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(y, its float8 scales or None, h or None): rms_norm's launch, rounded to float8 where group is given."""
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
    y = torch.empty((rows, H), dtype=x.dtype if group is None else torch.float8_e4m3fn, device=x.device)
    scale = None if group is None else torch.empty((rows, triton.cdiv(H, group)), dtype=torch.float32,
                                                   device=x.device)
    h = None
    if residual is not None:
        assert residual.shape == x.shape, "residual must have the shape of x"
        r2 = residual.reshape(-1, H)
        if r2.stride(-1) != 1:
            r2 = r2.contiguous()
        h = torch.empty((rows, H), dtype=x.dtype, device=x.device)
    if rows > 0:
        BLOCK_H = max(triton.next_power_of_2(H), group or 1)
        num_warps = min(max(BLOCK_H // 256, 1), 16)
        placeholder = y  # for the pointers a launch does not read
        _rms_norm_kernel[(rows,)](
            x2,
            placeholder if residual is None else r2,
            weight.contiguous(),
            y,
            placeholder if h is None else h,
            placeholder if scale is None else scale,
            outer,
            stride_x,
            inner,
            0 if residual is None else r2.stride(0),
            y.stride(0),
            0 if h is None else h.stride(0),
            0 if scale is None else scale.stride(0),
            H,
            float(eps),
            HAS_RESIDUAL=residual is not None,
            BLOCK_H=BLOCK_H,
            ROUND=group is not None,
            GROUP=group or 1,
            num_warps=num_warps,
            **pdl_args(x2.device),
        )
    y = y.view(x.shape) if group is None else y
    return y, scale, None if h is None else h.view(x.shape)


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


def rms_norm_quantized_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    group: int,
    residual: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Plain-PyTorch reference for :func:`rms_norm_quantized`."""
    out = rms_norm_ref(x, weight, eps, residual)
    y, h = out if residual is not None else (out, None)
    return (*quantize_activations_ref(y, group), h)
