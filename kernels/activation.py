"""Gated SiLU for MLPs: silu(gate) * up, with gate and up packed side by side in one tensor; optionally rounded to
float8 a token's `group` features at a time on the way out (the input of a float8 down projection)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .pdl import pdl_args, pdl_enter
from .scaled_activations import _scale_groups, quantize_activations_ref


@triton.jit
def _silu_and_mul_kernel(
    x_ptr,
    out_ptr,
    scale_ptr,  # ROUND: the float32 scales [T, ceil(I / GROUP)] (else unused)
    stride_x,
    stride_o,
    stride_s,
    I,
    BLOCK: tl.constexpr,
    ROUND: tl.constexpr,  # out in float8: each GROUP columns of a row over its largest magnitude / 448
    GROUP: tl.constexpr,  # ROUND: divides BLOCK
    PDL: tl.constexpr,
):
    pdl_enter(PDL)
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < I
    gate = tl.load(x_ptr + row * stride_x + offs, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(x_ptr + row * stride_x + I + offs, mask=mask, other=0.0).to(tl.float32)
    y = gate / (1.0 + tl.exp(-gate)) * up
    if ROUND:
        # Rounded to x's dtype first, as silu_and_mul stores it, so that this equals quantize_activations over
        # silu_and_mul's output bit for bit (columns past I are 0: no effect on a group's largest magnitude).
        y = y.to(x_ptr.dtype.element_ty).to(tl.float32)
        q, scale = _scale_groups(tl.reshape(y, (BLOCK // GROUP, GROUP)))
        tl.store(out_ptr + row * stride_o + offs, tl.reshape(q, (BLOCK,)).to(out_ptr.dtype.element_ty), mask=mask)
        groups = tl.program_id(1) * (BLOCK // GROUP) + tl.arange(0, BLOCK // GROUP)
        tl.store(scale_ptr + row * stride_s + groups, scale, mask=groups * GROUP < I)
    else:
        tl.store(out_ptr + row * stride_o + offs, y.to(out_ptr.dtype.element_ty), mask=mask)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """x [..., 2*I] -> new tensor [..., I] = silu(x[..., :I]) * x[..., I:] (fp32 math, x.dtype out)."""
    return _launch(x, None)[0]


def silu_and_mul_quantized(x: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """silu_and_mul(x) [T, I] as quantize_activations(silu_and_mul(x), group) gives it, in one launch: (float8 e4m3
    values, float32 scales [T, ceil(I / group)]) for x [T, 2*I]; group a power of two up to 1024."""
    assert x.dim() == 2 and group & (group - 1) == 0 and 16 <= group <= 1024
    return _launch(x, group)


def _launch(x: torch.Tensor, group: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    two_i = x.shape[-1]
    assert two_i % 2 == 0, "last dimension must be even"
    inter = two_i // 2
    x2 = x.reshape(-1, two_i)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    T = x2.shape[0]
    out = torch.empty((T, inter), dtype=x.dtype if group is None else torch.float8_e4m3fn, device=x.device)
    scale = None if group is None else torch.empty((T, triton.cdiv(inter, group)), dtype=torch.float32,
                                                    device=x.device)
    if T > 0 and inter > 0:
        BLOCK = max(min(triton.next_power_of_2(inter), 1024), group or 1)
        grid = (T, triton.cdiv(inter, BLOCK))
        _silu_and_mul_kernel[grid](
            x2, out, out if scale is None else scale, x2.stride(0), out.stride(0),
            0 if scale is None else scale.stride(0), inter, BLOCK=BLOCK, ROUND=group is not None,
            GROUP=group or 1, num_warps=4, **pdl_args(x2.device),
        )
    return out.view(*x.shape[:-1], inter), scale


def silu_and_mul_ref(x: torch.Tensor) -> torch.Tensor:
    """Plain-PyTorch reference for :func:`silu_and_mul`."""
    gate, up = x.float().chunk(2, dim=-1)
    return (F.silu(gate) * up).to(x.dtype)


def silu_and_mul_quantized_ref(x: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-PyTorch reference for :func:`silu_and_mul_quantized`."""
    return quantize_activations_ref(silu_and_mul_ref(x), group)
