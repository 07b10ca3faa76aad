"""Activations scaled per token per group of features into float8 e4m3 (the inputs of float8 experts' GEMMs,
fused_moe's `activations="fp8"`): one Triton kernel and a torch reference that agree bit for bit."""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .block_fp8 import E4M3_MAX, quantize_blocks
from .pdl import pdl_args, pdl_enter

# The activations float8 weights (routed experts, dense linears) meet when the caller leaves them to the kernel (the
# engine does): "fp8" rounds them to float8 a token's 128 features at a time, so the GEMMs run float8 dots, as
# DeepSeek-V3 was trained and as vLLM / SGLang serve block-float8 models; "model" keeps them in the model's dtype and
# widens the weights to it (the dequantized model exactly). H200, fused_moe alone (session 16), fp8 against model:
# 0.58-0.70x the time at every shape, decode (DeepSeek-V2-Lite bs64 174 against 266 us, bs256 209 against 299) and
# prefill (1783 against 3302 us). Outputs differ from the dequantized model by float8's rounding of the activations
# (2^-4 of a value). SPMD_FP8_ACT=model | fp8. (fp16 activations, scaled the same way, timed 0.95-1.1x of "model"
# and were removed.)
ACTIVATIONS = ("model", "fp8")
DEFAULT_ACTIVATIONS = os.environ.get("SPMD_FP8_ACT", "fp8")
if DEFAULT_ACTIVATIONS not in ACTIVATIONS:
    raise ValueError(f"SPMD_FP8_ACT={DEFAULT_ACTIVATIONS!r}: set it to one of {', '.join(ACTIVATIONS)} (or unset)")

_PEAK = tl.constexpr(E4M3_MAX)  # a group's largest magnitude maps to e4m3's (a kernel reads only constexpr globals)


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
def _scale_groups(v):
    """(v / scale rounded to e4m3 values, scale) per row of a [rows, group] fp32 tile, scale = the row's largest
    magnitude / 448 (1 for a zero row). IEEE division, as torch's reference divides."""
    amax = tl.max(tl.abs(v), axis=1)
    scale = tl.where(amax > 0, tl.math.div_rn(amax, tl.full(amax.shape, _PEAK, tl.float32)), 1.0)
    return _round_to_e4m3(tl.math.div_rn(v, scale[:, None] + tl.zeros_like(v))), scale


@triton.jit(do_not_specialize=["num_rows", "out_rows"])
def _quantize_groups_kernel(x_ptr, q_ptr, s_ptr, num_rows, out_rows, stride_xt, stride_qt, stride_st, stride_sg,
                            COLS: tl.constexpr, GROUP: tl.constexpr, GROUPS: tl.constexpr, ROWS: tl.constexpr,
                            PDL: tl.constexpr):
    """q[t, cols of group g] = x / s[t, g] for a [ROWS, GROUPS * GROUP] tile a program (see _scale_groups); s is
    written through both its strides (token- or group-major). Rows num_rows .. out_rows of q and s are padding:
    zeros with scale 1."""
    pdl_enter(PDL)
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    cols = tl.program_id(1) * (GROUPS * GROUP) + tl.arange(0, GROUPS * GROUP)
    row_ok = rows < out_rows
    mask = row_ok[:, None] & (cols[None, :] < COLS)
    rows64 = rows.to(tl.int64)
    v = tl.load(x_ptr + rows64[:, None] * stride_xt + cols[None, :], mask=mask & (rows < num_rows)[:, None],
                other=0.0).to(tl.float32)
    # Each row's GROUPS groups as rows of their own (columns past COLS are 0: no effect on a group's magnitude).
    q, scale = _scale_groups(tl.reshape(v, (ROWS * GROUPS, GROUP)))
    q = tl.reshape(q, (ROWS, GROUPS * GROUP))
    tl.store(q_ptr + rows64[:, None] * stride_qt + cols[None, :], q.to(q_ptr.dtype.element_ty), mask=mask)
    groups = tl.program_id(1) * GROUPS + tl.arange(0, GROUPS)
    s_mask = row_ok[:, None] & (groups[None, :] * GROUP < COLS)
    tl.store(s_ptr + rows64[:, None] * stride_st + groups[None, :] * stride_sg,
             tl.reshape(scale, (ROWS, GROUPS)), mask=s_mask)


# From TILE_MIN_ROWS rows (prefill) a program rounds up to TILE_COLUMNS columns of TILE_ROWS rows: one 128-wide group
# a program was latency-bound there, 112 us for Llama-3-8B's 8192 x 4096 qkv input on an H200 against ~18 us so
# (session 18, tests/gpu/probe_scaled_mm.py). Fewer rows (decode) keep a group a program: more programs, each
# shorter, for a launch whose time is one load's latency.
TILE_COLUMNS, TILE_ROWS, TILE_MIN_ROWS = 1024, 4, 256


def quantize_activations(x: torch.Tensor, group: int, group_major_scales: bool = False,
                         rows_multiple: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(x / scale in float8 e4m3, scale [T, ceil(H / group)] fp32) for x [T, H]: a scale per row per group of
    columns, the group's largest magnitude over 448. Equal to quantize_activations_ref. group: a power of two up to
    TILE_COLUMNS. group_major_scales: the scales laid out group by group (strides (1, T)), as cuBLAS's block-scaled
    GEMM reads them. rows_multiple: both results padded to a multiple of that many rows, zeros with scale 1 (cuBLAS
    wants group-major scales' rows 16-byte aligned)."""
    T, H = x.shape
    assert x.stride(1) == 1, "x's rows must be contiguous"
    assert group & (group - 1) == 0 and 16 <= group <= TILE_COLUMNS, f"group {group}: a power of two, 16..1024"
    out_rows = -(-T // rows_multiple) * rows_multiple
    q = torch.empty((out_rows, H), dtype=torch.float8_e4m3fn, device=x.device)
    num_groups = triton.cdiv(H, group)
    if group_major_scales:
        scale = torch.empty((num_groups, out_rows), dtype=torch.float32, device=x.device).t()
    else:
        scale = torch.empty((out_rows, num_groups), dtype=torch.float32, device=x.device)
    if out_rows:
        groups = 1 if T < TILE_MIN_ROWS else min(triton.next_power_of_2(num_groups), TILE_COLUMNS // group)
        rows = min(TILE_ROWS, triton.next_power_of_2(out_rows))
        _quantize_groups_kernel[(triton.cdiv(out_rows, rows), triton.cdiv(num_groups, groups))](
            x, q, scale, T, out_rows, x.stride(0), q.stride(0), scale.stride(0), scale.stride(1), COLS=H,
            GROUP=group, GROUPS=groups, ROWS=rows, **pdl_args(x.device))
    return q, scale


def quantize_activations_ref(x: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch reference for quantize_activations: block_fp8.quantize_blocks with blocks of (1, group)."""
    return quantize_blocks(x, (1, group))
