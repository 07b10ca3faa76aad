"""Linear layers over block-scaled float8 weights (DeepSeek-V3's and Qwen3's -FP8 releases): x @ (w * scale)^T with
x rounded to float8 a token's 128 features at a time, so the GEMM runs float8 tensor-core dots (W8A8, as vLLM /
SGLang serve those releases), or with x kept in its dtype and the weights widened to it (the dequantized model)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .block_fp8 import dequantize_blocks
from .pdl import pdl_args, pdl_enter
from .scaled_activations import (ACTIVATIONS, DEFAULT_ACTIVATIONS, _scale_groups, quantize_activations,
                                 quantize_activations_ref)
from .scaled_dot import _scaled_step, _zero_acc

# How the activations reach the kernel (the kernel's ACT): in the model's dtype, weights widened to it; rounded to
# float8 by the kernel itself, a k-step's tile at a time (decode: no launch of its own, and a handful of rows cost
# little beside the weight stream); rounded before the launch by quantize_activations (prefill, where every
# program rounding its own copy of x's tile would cost more issue slots than its dots).
ACT_MODEL, ACT_ROUNDED_HERE, ACT_ROUNDED_BEFORE = 0, 1, 2
# Rows up to which the kernel rounds x itself; beyond, quantize_activations does once.
MAX_ROWS_ROUNDED_HERE = 32
# Decode-sized tiles (under 64 rows) compute each product transposed, weights x rows, so that sm_90 runs a float8
# wgmma from shared memory (see scaled_dot._scaled_step; fused_moe.SWAP_AB timed it there). Tests flip it.
SWAP_AB = True


@triton.jit(do_not_specialize=["M"])  # the token count changes every step
def _fp8_linear_kernel(x_ptr, xs_ptr, w_ptr, ws_ptr, bias_ptr, y_ptr, M, stride_xm, stride_xsm, stride_wn,
                       stride_sn, stride_ym, N: tl.constexpr, K: tl.constexpr, BLOCK_M: tl.constexpr,
                       BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SCALE_N: tl.constexpr, ACT: tl.constexpr,
                       SWAP: tl.constexpr, HAS_BIAS: tl.constexpr, GROUP_M: tl.constexpr, PDL: tl.constexpr):
    """y[m, n] = sum_k x[m, k] * w[n, k] * ws[n // SCALE_N, k // BLOCK_K] (+ bias[n]) for one [BLOCK_M, BLOCK_N] tile.
    BLOCK_K is the weight block's width, so a k-step is one scale column and, with float8 activations, one scale
    group of x; BLOCK_N divides SCALE_N, so a tile has one weight scale a k-step. Tiles are ordered GROUP_M row
    tiles at a time (prefill: a group's weights are read from L2, not HBM, by the group's other row tiles)."""
    pdl_enter(PDL)
    pid = tl.program_id(0)
    num_m = tl.cdiv(M, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * num_n
    first_m = (pid // per_group) * GROUP_M
    rows_here = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % rows_here
    pid_n = (pid % per_group) // rows_here

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    rows64 = offs_m.to(tl.int64)
    x_ptrs = x_ptr + rows64[:, None] * stride_xm + offs_k[None, :]
    # w's rows seen as a [BLOCK_K, BLOCK_N] tile, contiguous along K; int64: N * K may pass 2^31.
    w_ptrs = w_ptr + offs_n[None, :].to(tl.int64) * stride_wn + offs_k[:, None]
    s_ptr = ws_ptr + (pid_n * BLOCK_N // SCALE_N) * stride_sn
    acc = _zero_acc(BLOCK_M, BLOCK_N, SWAP)
    for k0 in range(0, K, BLOCK_K):
        mask_k = k0 + offs_k < K
        a = tl.load(x_ptrs, mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        w = tl.load(w_ptrs, mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        scale = tl.load(s_ptr + k0 // BLOCK_K)
        if ACT == 1:  # this k-step's columns are one scale group of x (masked columns are 0: no effect on amax)
            rounded, a_scale = _scale_groups(a.to(tl.float32))
            a = rounded.to(w_ptr.dtype.element_ty)
            scale = scale * _oriented(a_scale, SWAP)
        elif ACT == 2:
            a_scale = tl.load(xs_ptr + rows64 * stride_xsm + k0 // BLOCK_K, mask=mask_m, other=0.0)
            scale = scale * _oriented(a_scale, SWAP)
        acc = _scaled_step(acc, a, w, scale, SWAP)
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K
    if SWAP:
        acc = tl.trans(acc)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + rows64[:, None] * stride_ym + offs_n[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def _oriented(row_scales, SWAP: tl.constexpr):
    """A tile's per-row scales [BLOCK_M] as a column [BLOCK_M, 1] of the accumulator, or a row [1, BLOCK_M] with
    SWAP."""
    if SWAP:
        return row_scales[None, :]
    return row_scales[:, None]


# (BLOCK_M, BLOCK_N, num_warps, num_stages) on CUDA by rows (BLOCK_K is the weight block's width, 128 in every
# release). Decode: 16 or 32 rows against 64 weight rows a program (more programs for narrow weights), a deep
# pipeline of 8 KB weight tiles. Prefill: 128 x 128 tiles, the float8 dots' usual shape.
CUDA_CONFIGS = {16: (16, 64, 4, 6), 32: (32, 64, 4, 5), 64: (64, 128, 4, 4), None: (128, 128, 8, 3)}
GROUP_M = 8


def fp8_linear_config(rows: int, device: torch.device) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) for `rows` tokens (BLOCK_N before clipping to the weight block)."""
    if device.type != "cuda":  # TRITON_INTERPRET: the smallest tiles tl.dot accepts
        return 16, 32, 4, 1
    return next(cfg for limit, cfg in CUDA_CONFIGS.items() if limit is None or rows <= limit)


def fp8_linear(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, block: tuple[int, int],
               bias: torch.Tensor | None = None, activations: str | None = None,
               config: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """x [..., K] @ (weight * scales)^T (+ bias) -> [..., N] in x.dtype, fp32 accumulation. weight [N, K] float8
    e4m3 whose (block[0] x block[1]) blocks are multiplied by weight_scale [ceil(N / block[0]), ceil(K / block[1])]
    (float32, DeepSeek-V3's layout); both sides of the block powers of two of at least 16; N and K any size.
    ``activations``: "fp8" rounds x to float8 with a scale per token per block[1] features (fp8_linear_ref says
    exactly how), "model" keeps x and widens the weights to it; None: DEFAULT_ACTIVATIONS. No host sync:
    CUDA-graph safe."""
    n, k = weight.shape
    bn_block, bk = block
    assert weight.dtype == torch.float8_e4m3fn and x.shape[-1] == k and weight.stride(1) == 1
    assert bn_block >= 16 and bk >= 16 and bn_block & (bn_block - 1) == 0 and bk & (bk - 1) == 0
    assert weight_scale.shape == (triton.cdiv(n, bn_block), triton.cdiv(k, bk)) and weight_scale.stride(1) == 1
    activations = DEFAULT_ACTIVATIONS if activations is None else activations
    if activations not in ACTIVATIONS:
        raise ValueError(f"fp8_linear activations={activations!r}: choose one of {', '.join(ACTIVATIONS)}")
    x2 = x.reshape(-1, k)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    m = x2.shape[0]
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m == 0 or n == 0:
        return y.view(*x.shape[:-1], n)
    bm, bn, warps, stages = config or fp8_linear_config(m, x.device)
    bn = min(bn, bn_block)
    if x.element_size() >= 4:  # fp32 tiles: keep shared memory in bounds
        stages = min(stages, 2)
    act = ACT_MODEL
    xs = x2  # not read
    if activations == "fp8":
        act = ACT_ROUNDED_HERE if m <= MAX_ROWS_ROUNDED_HERE else ACT_ROUNDED_BEFORE
        if act == ACT_ROUNDED_BEFORE:
            x2, xs = quantize_activations(x2, bk)
    swap = SWAP_AB and act != ACT_MODEL and bm < 64
    grid = (triton.cdiv(m, bm) * triton.cdiv(n, bn),)
    _fp8_linear_kernel[grid](
        x2, xs, weight, weight_scale, bias if bias is not None else weight_scale, y, m, x2.stride(0), xs.stride(0),
        weight.stride(0), weight_scale.stride(0), y.stride(0), N=n, K=k, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
        SCALE_N=bn_block, ACT=act, SWAP=swap, HAS_BIAS=bias is not None, GROUP_M=GROUP_M, num_warps=warps,
        num_stages=stages, **pdl_args(x.device))
    return y.view(*x.shape[:-1], n)


def fp8_linear_ref(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, block: tuple[int, int],
                   bias: torch.Tensor | None = None, activations: str = "model") -> torch.Tensor:
    """Plain-PyTorch reference for :func:`fp8_linear`: the weights dequantized by their block scales, x rounded to
    float8 as the kernel rounds it ("fp8", quantize_activations_ref), the product in fp32, rounded once to x.dtype."""
    w = dequantize_blocks(weight, weight_scale, block)
    x2 = x.reshape(-1, x.shape[-1]).float()
    if activations == "fp8":
        q, scale = quantize_activations_ref(x2, block[1])
        x2 = dequantize_blocks(q, scale, (1, block[1]))
    y = x2 @ w.t()
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype).view(*x.shape[:-1], weight.shape[0])
