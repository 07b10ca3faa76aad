"""Activations scaled per token per group of features into float8 e4m3 or fp16 (the inputs of float8 experts'
GEMMs, fused_moe's `activations`): one Triton kernel and a torch reference that agree bit for bit."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .block_fp8 import E4M3_MAX, quantize_blocks
from .pdl import pdl_args, pdl_enter


@triton.jit
def _round_to_e4m3(v):
    """v (fp32, |v| <= 448) rounded to the nearest float8 e4m3 value, ties to even, still in fp32, so the float8
    cast after it is exact. The hardware's cast rounds so too, but Triton's CPU interpreter loses the carry into
    the exponent (127.96 -> 64): with this the interpreter's kernel tests check the float8 path bit for bit."""
    bits = v.to(tl.int32, bitcast=True)
    # 3 mantissa bits kept of fp32's 23: add half a step (plus the kept lowest bit, for ties to even), then truncate.
    normal = ((bits + 0x7FFFF + ((bits >> 20) & 1)) & -0x100000).to(tl.float32, bitcast=True)
    # Below 2^-6 e4m3 steps by 2^-9: adding 1.5 * 2^14 (whose fp32 step is 2^-9) rounds there, ties to even.
    subnormal = (v + 24576.0) - 24576.0
    return tl.where(tl.abs(v) < 0.015625, subnormal, normal)


@triton.jit
def _scale_groups(v, ACT: tl.constexpr, PEAK: tl.constexpr):
    """(v / scale, scale) per row of a [rows, group] fp32 tile, scale = the row's largest magnitude / PEAK (1 for a
    zero row), rounded to e4m3 for float8 (ACT 1). IEEE division, as torch's reference divides."""
    amax = tl.max(tl.abs(v), axis=1)
    scale = tl.where(amax > 0, tl.math.div_rn(amax, tl.full(amax.shape, PEAK, tl.float32)), 1.0)
    v = tl.math.div_rn(v, scale[:, None] + tl.zeros_like(v))
    if ACT == 1:
        v = _round_to_e4m3(v)
    return v, scale


@triton.jit(do_not_specialize=["num_rows"])
def _quantize_groups_kernel(x_ptr, q_ptr, s_ptr, num_rows, stride_xt, stride_qt, stride_st, COLS: tl.constexpr,
                            GROUP: tl.constexpr, ROWS: tl.constexpr, ACT: tl.constexpr, PEAK: tl.constexpr,
                            PDL: tl.constexpr):
    """q[t, cols of group g] = x / s[t, g] for ROWS rows and one GROUP-column group a program (see _scale_groups)."""
    pdl_enter(PDL)
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    g = tl.program_id(1)
    cols = g * GROUP + tl.arange(0, GROUP)
    row_ok = rows < num_rows
    mask = row_ok[:, None] & (cols[None, :] < COLS)
    rows64 = rows.to(tl.int64)
    v = tl.load(x_ptr + rows64[:, None] * stride_xt + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    q, scale = _scale_groups(v, ACT, PEAK)
    tl.store(q_ptr + rows64[:, None] * stride_qt + cols[None, :], q.to(q_ptr.dtype.element_ty), mask=mask)
    tl.store(s_ptr + rows64 * stride_st + g, scale, mask=row_ok)


# Scaled activations (fused_moe's `activations`): code for the kernels, the dtype, the peak a group is scaled to.
# Float8: its largest value. fp16: 1, so products with float8 weights (<= 448) and their sums stay far inside fp16's
# range even where a dot's result is rounded to fp16 (Triton's CPU interpreter does); values below 2^-14 of a
# group's largest turn subnormal, an absolute error of 2^-25 of it at most, far under bf16's rounding of that one.
ACTIVATIONS = {"model": (0, None, 1.0), "fp8": (1, torch.float8_e4m3fn, E4M3_MAX), "fp16": (2, torch.float16, 1.0)}


def quantize_activations(x: torch.Tensor, group: int, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x / scale in `kind`'s dtype, scale [T, ceil(H / group)] fp32) for x [T, H]: a scale per row per group of
    columns, the group's largest magnitude over the kind's peak. Equal to quantize_activations_ref."""
    code, dtype, peak = ACTIVATIONS[kind]
    T, H = x.shape
    q = torch.empty((T, H), dtype=dtype, device=x.device)
    scale = torch.empty((T, triton.cdiv(H, group)), dtype=torch.float32, device=x.device)
    if T:
        rows = 4
        _quantize_groups_kernel[(triton.cdiv(T, rows), scale.shape[1])](
            x, q, scale, T, x.stride(0), q.stride(0), scale.stride(0), COLS=H, GROUP=group, ROWS=rows, ACT=code,
            PEAK=peak, **pdl_args(x.device))
    return q, scale


def quantize_activations_ref(x: torch.Tensor, group: int, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch reference for quantize_activations: block_fp8.quantize_blocks with blocks of (1, group)."""
    _, dtype, peak = ACTIVATIONS[kind]
    return quantize_blocks(x, (1, group), dtype, peak)
