"""Decode-sized products batched over attention heads: out[t, h] = x[t, h] @ w[h] for at most 16 rows, each head's
weight read once, in place of torch.bmm for MLA's absorbed projections (q_nope by W_UK, the latent output by W_UV).

At decode these are small (DeepSeek-V2-Lite: 2 MB each a layer) and cuBLAS's batched GEMM is a launch outside the
chain of programmatic dependent launches (pdl.py) that the kernels around it form: the next kernel cannot be
scheduled until it ends, and it cannot start until the previous one has. Here each program fetches its first weight
tile before its PDL wait, as skinny_gemm does; with K at most BLOCK_K (W_UK's 128) that is its whole weight.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .decode_attention import _num_sms
from .pdl import pdl_args, pdl_enter
from .skinny_gemm import MAX_ROWS, _dot  # (rows: the tensor-core tile's 16; the dot, exact for fp32 weights)


@triton.jit
def _head_gemm_kernel(x_ptr, w_ptr, out_ptr, M, N, K, stride_xm, stride_xh, stride_wh, stride_wk, stride_wn,
                      stride_om, stride_oh, IEEE: tl.constexpr, PDL: tl.constexpr, BLOCK_M: tl.constexpr,
                      BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """out[m, h, n] = sum_k x[m, h, k] * w[h, k, n] for head h = program_id(0) and one program's BLOCK_N output
    features; w may be laid out either way (W_UK's rows along K, W_UV's along N: the strides say which is 1). K is a
    multiple of BLOCK_K (the wrapper checks), so the loop loads without K masks."""
    h = tl.program_id(0).to(tl.int64)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    w_ptrs = w_ptr + h * stride_wh + offs_k[:, None] * stride_wk + offs_n[None, :] * stride_wn
    # The first weight tile before the wait on the previous kernel (weights never depend on it; pdl.py).
    w = tl.load(w_ptrs, mask=mask_n[None, :], other=0.0)
    pdl_enter(PDL)
    x_ptrs = x_ptr + h * stride_xh + offs_m[:, None] * stride_xm + offs_k[None, :]
    x = tl.load(x_ptrs, mask=mask_m[:, None], other=0.0)
    acc = _dot(x, w, tl.zeros([BLOCK_M, BLOCK_N], tl.float32), IEEE)
    for _ in range(BLOCK_K, K, BLOCK_K):
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K * stride_wk
        x = tl.load(x_ptrs, mask=mask_m[:, None], other=0.0)
        w = tl.load(w_ptrs, mask=mask_n[None, :], other=0.0)
        acc = _dot(x, w, acc, IEEE)
    out_ptrs = out_ptr + h * stride_oh + offs_m[:, None] * stride_om + offs_n[None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


def head_gemm_config(heads: int, n: int, k: int, itemsize: int, device: torch.device) -> tuple[int, int, int, int]:
    """(BLOCK_N, BLOCK_K, num_warps, num_stages): K steps of up to 128 (64 for fp32, within shared memory) that
    divide K, and output tiles of 64 features narrowed to 16 until the heads' tiles give every SM a program
    (on 132 SMs DeepSeek-V2-Lite's 16 heads: W_UK [128, 512] 32-wide, 256 programs of one K step; W_UV [512, 128]
    16-wide, 128 of four)."""
    block_k = 128 if itemsize <= 2 else 64
    while k % block_k:
        block_k //= 2
    block_n = 64
    while block_n > 16 and heads * triton.cdiv(n, block_n) < _num_sms(device):
        block_n //= 2
    return block_n, block_k, 4, 3


def head_gemm_supports(x: torch.Tensor, w: torch.Tensor) -> bool:
    """Whether head_gemm takes x [T, H, K] @ w [H, K, N]: at most MAX_ROWS rows, w of x's dtype in bf16 / fp16 /
    fp32, K a multiple of 16 (the dot's step), x's features contiguous."""
    return (x.dim() == 3 and w.dim() == 3 and x.shape[1] == w.shape[0] and x.shape[2] == w.shape[1]
            and x.shape[0] <= MAX_ROWS and x.dtype == w.dtype and x.stride(-1) == 1
            and w.dtype in (torch.bfloat16, torch.float16, torch.float32) and w.shape[1] % 16 == 0)


def head_gemm(x: torch.Tensor, w: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """x [T, H, K] (rows and heads strided OK) @ w [H, K, N] (either of its last two dims contiguous) -> new [T, H, N]
    in x.dtype (or into `out`, its last dim contiguous), fp32 accumulation: torch.bmm over heads for decode-sized T
    (see head_gemm_supports). No host sync: CUDA-graph safe."""
    if not head_gemm_supports(x, w):
        raise ValueError(f"head_gemm takes x [T <= {MAX_ROWS}, H, K] @ w [H, K, N] of one dtype (bf16 / fp16 / "
                         f"fp32), K a multiple of 16, x's last dim contiguous; got x {tuple(x.shape)} {x.dtype}, "
                         f"w {tuple(w.shape)} {w.dtype}: use torch.bmm")
    t, heads, k = x.shape
    n = w.shape[2]
    if out is None:
        out = torch.empty((t, heads, n), dtype=x.dtype, device=x.device)
    assert out.shape == (t, heads, n) and out.stride(-1) == 1
    if t == 0 or heads == 0 or n == 0:
        return out
    block_n, block_k, warps, stages = head_gemm_config(heads, n, k, w.element_size(), x.device)
    _head_gemm_kernel[(heads, triton.cdiv(n, block_n))](
        x, w, out, t, n, k, x.stride(0), x.stride(1), w.stride(0), w.stride(1), w.stride(2), out.stride(0),
        out.stride(1), IEEE=w.dtype == torch.float32, BLOCK_M=MAX_ROWS, BLOCK_N=block_n, BLOCK_K=block_k,
        num_warps=warps, num_stages=stages, **pdl_args(x.device))
    return out


def head_gemm_ref(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Plain-PyTorch reference for :func:`head_gemm`: the product in fp32, rounded once to x.dtype."""
    return torch.einsum("thk,hkn->thn", x.float(), w.float()).to(x.dtype)
