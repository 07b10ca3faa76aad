"""Decode-sized linear layers (at most 16 rows): x @ w^T, the weight streamed through pipelined tensor-core dots.

Timed alone (H200) it matches or beats cuBLAS on Llama-3-8B's projections; inside the model it does not yet (bs1
decode 5.0 vs 4.7 ms a step), so layers/linear.py uses it only with SPMD_SKINNY_GEMM=1.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .pdl import pdl_args, pdl_enter

# Rows this kernel takes: the tensor-core tile pads the batch to 16 rows, so 1..16 rows cost the same weight stream.
MAX_ROWS = 16


@triton.jit
def _dot(x, w, acc, IEEE: tl.constexpr):
    if IEEE:  # fp32 weights: exact products, not TF32's 10-bit mantissas
        return tl.dot(x, w, acc, input_precision="ieee")
    return tl.dot(x, w, acc)


@triton.jit
def _skinny_gemm_kernel(x_ptr, w_ptr, bias_ptr, out_ptr, M, N, K, stride_xm, stride_wn, stride_om,
                        HAS_BIAS: tl.constexpr, IEEE: tl.constexpr, PDL: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """out[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]) for one program's BLOCK_N output features.

    At decode the work is the weight stream, not the multiply-adds: what matters is how many weight bytes each
    SM keeps in flight. Tensor-core dots let Triton's software pipeline prefetch num_stages [BLOCK_K, BLOCK_N]
    weight tiles ahead (cp.async); timed alone on an H200, Llama-3-8B's o_proj streams at 70% of the copy rate here
    against 59% under cuBLAS. K is a multiple of BLOCK_K (the wrapper checks), so the loop loads without K masks
    and stays vectorised.
    """
    pid_n = tl.program_id(0)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    x_ptrs = x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :]
    # w's rows seen as a [BLOCK_K, BLOCK_N] tile, contiguous along K; int64 offsets: lm_head is N * K > 2^31 / 2.
    w_ptrs = w_ptr + offs_n[None, :].to(tl.int64) * stride_wn + offs_k[:, None]
    # The first weight tile is fetched before waiting on the previous kernel (programmatic dependent launch, see
    # pdl.py; every other kernel waits first thing): weights never depend on it, x and the output buffer do. Peeled
    # so that the loop stays pipelined.
    w = tl.load(w_ptrs, mask=mask_n[None, :], other=0.0)
    pdl_enter(PDL)
    x = tl.load(x_ptrs, mask=mask_m[:, None], other=0.0)
    acc = _dot(x, w, tl.zeros([BLOCK_M, BLOCK_N], tl.float32), IEEE)
    for _ in range(BLOCK_K, K, BLOCK_K):
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K
        x = tl.load(x_ptrs, mask=mask_m[:, None], other=0.0)
        w = tl.load(w_ptrs, mask=mask_n[None, :], other=0.0)
        acc = _dot(x, w, acc, IEEE)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    out_ptrs = out_ptr + offs_m[:, None] * stride_om + offs_n[None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


def skinny_gemm_config(n: int, k: int, itemsize: int = 2) -> tuple[int, int, int, int]:
    """(BLOCK_N, BLOCK_K, num_warps, num_stages) for an [n, k] weight, from tests/gpu/tune_skinny_gemm.py (H200).

    Wide matrices (qkv, gate_up, lm_head) take 64 output features a program, 4 tiles in flight; narrow ones (o,
    down) 32, so that each SM gets a program, with 256-deep K tiles and a deeper pipeline where K is long enough
    to use it. fp32 weights halve BLOCK_K to stay within shared memory; a K that 256 does not divide takes 128.
    """
    if n >= 6144:
        block_n, block_k, stages = 64, 128, 4
    else:
        block_n, block_k, stages = 32, 256 if itemsize == 2 and k % 256 == 0 else 128, 5 if k >= 4096 else 3
    return block_n, block_k, 4, stages


def skinny_gemm_supports(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether skinny_gemm takes this product: at most MAX_ROWS rows, 16-bit or fp32 weights of x's dtype, K a
    multiple of 128 (no K masks in the loop), contiguous weight rows."""
    k = weight.shape[1]
    return (x.numel() // max(k, 1) <= MAX_ROWS and x.dtype == weight.dtype and k % 128 == 0
            and weight.dtype in (torch.bfloat16, torch.float16, torch.float32) and weight.stride(1) == 1)


def skinny_gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                config: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """x [..., K] @ weight[N, K]^T (+ bias) -> [..., N] in x.dtype, for at most MAX_ROWS rows (see
    skinny_gemm_supports); fp32 accumulation."""
    n, k = weight.shape
    x2 = x.reshape(-1, k)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    m = x2.shape[0]
    if not skinny_gemm_supports(x2, weight):
        raise ValueError(f"skinny_gemm takes at most {MAX_ROWS} rows, K a multiple of 128 and x.dtype == weight.dtype"
                         f" in bf16/fp16/fp32; got x {tuple(x.shape)} {x.dtype}, weight {tuple(weight.shape)} "
                         f"{weight.dtype}: use F.linear")
    out = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m > 0 and n > 0:
        block_n, block_k, warps, stages = config or skinny_gemm_config(n, k, weight.element_size())
        assert k % block_k == 0, (k, block_k)
        _skinny_gemm_kernel[(triton.cdiv(n, block_n),)](
            x2, weight, bias if bias is not None else weight, out, m, n, k, x2.stride(0), weight.stride(0),
            out.stride(0), HAS_BIAS=bias is not None, IEEE=weight.dtype == torch.float32, BLOCK_M=MAX_ROWS,
            BLOCK_N=block_n, BLOCK_K=block_k, num_warps=warps, num_stages=stages, **pdl_args(x.device))
    return out.view(*x.shape[:-1], n)


def skinny_gemm_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Plain-PyTorch reference for :func:`skinny_gemm`: the product in fp32, rounded once to x.dtype."""
    y = x.float() @ weight.float().t()
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)
