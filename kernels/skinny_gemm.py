"""Decode-sized linear layers (at most 16 rows): x @ w^T, the weight streamed through pipelined tensor-core dots,
optionally behind the residual add and RMSNorm that precede the projection (one launch instead of two) and, for a
qkv projection, ahead of the rotary embedding and KV-cache store (qkv_epilogue.py, qkv_rope_store.py).

Inside the model it beats cuBLAS on mid-sized weights only (Llama-3-8B's qkv and o) and only with programmatic
dependent launch; layers/linear.py decides where it runs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .pdl import pdl_args, pdl_enter
from .qkv_epilogue import RopeStore, rope_feature_order, rope_store_epilogue
from .rmsnorm import rms_norm_ref

# Rows this kernel takes: the tensor-core tile pads the batch to 16 rows, so 1..16 rows cost the same weight stream.
MAX_ROWS = 16


@triton.jit
def _dot(x, w, acc, IEEE: tl.constexpr):
    if IEEE:  # fp32 weights: exact products, not TF32's 10-bit mantissas
        return tl.dot(x, w, acc, input_precision="ieee")
    return tl.dot(x, w, acc)


@triton.jit
def _residual_tile(x_ptrs, r_ptrs, mask_m):
    """(x + residual) for one [BLOCK_M, BLOCK_K] tile, rounded to x's dtype as rms_norm stores the residual stream."""
    x = tl.load(x_ptrs, mask=mask_m[:, None], other=0.0)
    r = tl.load(r_ptrs, mask=mask_m[:, None], other=0.0)
    return (x.to(tl.float32) + r.to(tl.float32)).to(x.dtype)


@triton.jit
def _residual_rstd(x_ptrs, r_ptrs, h_ptrs, mask_m, store_m, K, eps, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """1 / rms of each row of x + residual over all K; rows in store_m also get x + residual written (the
    residual stream for the next layer). Every program reads the whole rows, ~K * 4 bytes each from L2."""
    sq = tl.zeros([BLOCK_M, BLOCK_K], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        h = _residual_tile(x_ptrs + k0, r_ptrs + k0, mask_m)
        tl.store(h_ptrs + k0, h, mask=store_m[:, None])
        hf = h.to(tl.float32)
        sq += hf * hf
    return 1.0 / tl.sqrt(tl.sum(sq, axis=1) / K + eps)


@triton.jit
def _input_tile(x_ptrs, r_ptrs, nw_ptrs, rstd, mask_m, NORM: tl.constexpr):
    """One [BLOCK_M, BLOCK_K] tile of the product's left operand: x, or with NORM its normalised x + residual."""
    if NORM:
        h = _residual_tile(x_ptrs, r_ptrs, mask_m)
        x = (h.to(tl.float32) * rstd * tl.load(nw_ptrs).to(tl.float32)[None, :]).to(h.dtype)
    else:
        x = tl.load(x_ptrs, mask=mask_m[:, None], other=0.0)
    return x


@triton.jit
def _skinny_gemm_kernel(x_ptr, w_ptr, bias_ptr, out_ptr, res_ptr, norm_w_ptr, h_ptr, M, N, K, stride_xm, stride_wn,
                        stride_om, stride_rm, stride_hm, eps,
                        pos_ptr, cos_sin_ptr, slot_ptr, k_cache_ptr, v_cache_ptr, stride_cs, stride_cb, stride_cs_slot,
                        stride_ch, q_features, kv_features,
                        HAS_BIAS: tl.constexpr, NORM: tl.constexpr, ROPE: tl.constexpr, HEAD_DIM: tl.constexpr,
                        PAGE: tl.constexpr, FP8: tl.constexpr, IEEE: tl.constexpr, PDL: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """out[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]) for one program's BLOCK_N output features (NORM: of
    rms_norm(x + residual) * norm_w, with x + residual written to h by the first program).

    At decode the work is the weight stream, not the multiply-adds: what matters is how many weight bytes each
    SM keeps in flight. Tensor-core dots let Triton's software pipeline prefetch num_stages [BLOCK_K, BLOCK_N]
    weight tiles ahead (cp.async); timed alone on an H200, Llama-3-8B's o_proj streams at 70% of the copy rate here
    against 59% under cuBLAS. K is a multiple of BLOCK_K (the wrapper checks), so the loop loads without K masks
    and stays vectorised.
    """
    pid_n = tl.program_id(0)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if ROPE:
        offs_n = rope_feature_order(pid_n, q_features + kv_features, HEAD_DIM, BLOCK_N)
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
    # NORM: x is the layer's input and res_ptr the residual stream; the product is taken of
    # rms_norm(x + residual) * norm_w, rounded to x's dtype exactly as kernels/rmsnorm.py rounds it.
    r_ptrs = res_ptr + offs_m[:, None] * stride_rm + offs_k[None, :]
    nw_ptrs = norm_w_ptr + offs_k
    if NORM:
        store_m = mask_m & (offs_m * 0 + pid_n == 0)  # the first program writes the residual stream
        rstd = _residual_rstd(x_ptrs, r_ptrs, h_ptr + offs_m[:, None] * stride_hm + offs_k[None, :], mask_m,
                              store_m, K, eps, BLOCK_M, BLOCK_K)[:, None]
    else:
        rstd = tl.zeros([BLOCK_M, 1], tl.float32)
    x = _input_tile(x_ptrs, r_ptrs, nw_ptrs, rstd, mask_m, NORM)
    acc = _dot(x, w, tl.zeros([BLOCK_M, BLOCK_N], tl.float32), IEEE)
    for _ in range(BLOCK_K, K, BLOCK_K):
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K
        r_ptrs += BLOCK_K
        nw_ptrs += BLOCK_K
        x = _input_tile(x_ptrs, r_ptrs, nw_ptrs, rstd, mask_m, NORM)
        w = tl.load(w_ptrs, mask=mask_n[None, :], other=0.0)
        acc = _dot(x, w, acc, IEEE)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    y = acc.to(out_ptr.dtype.element_ty)
    if ROPE:
        y = rope_store_epilogue(y, pid_n, offs_m, offs_n, mask_m, pos_ptr, cos_sin_ptr, slot_ptr, k_cache_ptr,
                                v_cache_ptr, stride_cs, stride_cb, stride_cs_slot, stride_ch, q_features,
                                kv_features, HEAD_DIM, PAGE, FP8, BLOCK_M, BLOCK_N)
    out_ptrs = out_ptr + offs_m[:, None] * stride_om + offs_n[None, :]
    tl.store(out_ptrs, y, mask=mask_m[:, None] & mask_n[None, :])


def skinny_gemm_config(n: int, k: int, itemsize: int = 2) -> tuple[int, int, int, int]:
    """(BLOCK_N, BLOCK_K, num_warps, num_stages) for an [n, k] weight, from tests/gpu/tune_skinny_gemm.py (H200).

    Wide matrices (qkv, gate_up, lm_head) take 64 output features a program, 4 tiles in flight; narrow ones (o,
    down) 32, so that each SM gets a program, with 256-deep K tiles and a deeper pipeline where K is long enough
    to use it. fp32 weights halve BLOCK_K to stay within shared memory; BLOCK_K divides K (64 at least).
    """
    if n >= 6144:
        block_n, block_k, stages = 64, 128, 4
    else:
        block_n, block_k, stages = 32, 256 if itemsize == 2 and k % 256 == 0 else 128, 5 if k >= 4096 else 3
    while k % block_k:  # K a multiple of 64 only (skinny_gemm_supports): halve the tile until it divides K
        block_k //= 2
    return block_n, block_k, 4, stages


def skinny_gemm_supports(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether skinny_gemm takes this product: at most MAX_ROWS rows, 16-bit or fp32 weights of x's dtype, K a
    multiple of 64 (no K masks in the loop), contiguous weight rows."""
    k = weight.shape[1]
    return (x.numel() // max(k, 1) <= MAX_ROWS and x.dtype == weight.dtype and k % 64 == 0 and k > 0
            and weight.dtype in (torch.bfloat16, torch.float16, torch.float32) and weight.stride(1) == 1)


def skinny_gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                config: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """x [..., K] @ weight[N, K]^T (+ bias) -> [..., N] in x.dtype, for at most MAX_ROWS rows (see
    skinny_gemm_supports); fp32 accumulation."""
    n, k = weight.shape
    x2 = _rows(x, k)
    m = x2.shape[0]
    if not skinny_gemm_supports(x2, weight):
        raise ValueError(f"skinny_gemm takes at most {MAX_ROWS} rows, K a multiple of 64 and x.dtype == weight.dtype"
                         f" in bf16/fp16/fp32; got x {tuple(x.shape)} {x.dtype}, weight {tuple(weight.shape)} "
                         f"{weight.dtype}: use F.linear")
    out = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m > 0 and n > 0:
        _launch(x2, weight, bias, out, None, config)
    return out.view(*x.shape[:-1], n)


def rms_norm_skinny_gemm(x: torch.Tensor, residual: torch.Tensor, norm_weight: torch.Tensor, eps: float,
                         weight: torch.Tensor, bias: torch.Tensor | None = None,
                         config: tuple[int, int, int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """skinny_gemm(rms_norm(x + residual) * norm_weight, weight, bias) and x + residual, in one launch:
    kernels/rmsnorm.py's fused residual add and norm feeding the projection, for the same operands as skinny_gemm
    (x and residual [..., K] of weight's dtype, norm_weight [K]). Returns (out [..., N], x + residual [..., K])."""
    n, k = weight.shape
    x2 = _rows(x, k)
    if not skinny_gemm_supports(x2, weight):
        raise ValueError(f"rms_norm_skinny_gemm takes skinny_gemm's operands; got x {tuple(x.shape)} {x.dtype}, "
                         f"weight {tuple(weight.shape)} {weight.dtype}: use rms_norm then F.linear")
    norm = norm_operands(x2, residual, norm_weight, eps)
    out = torch.empty((x2.shape[0], n), dtype=x.dtype, device=x.device)
    if x2.shape[0] > 0 and n > 0:
        _launch(x2, weight, bias, out, norm, config)
    return out.view(*x.shape[:-1], n), norm[2].view(x.shape)


def norm_operands(x2: torch.Tensor, residual: torch.Tensor, norm_weight: torch.Tensor,
                  eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """The NORM prologue's launch operands for rows x2 [M, K]: (residual rows, norm weight, a new [M, K] buffer for
    x + residual, eps); checks that residual has x's shape and dtype and norm_weight is [K]."""
    k = x2.shape[1]
    r2 = _rows(residual, k)
    if r2.shape != x2.shape or r2.dtype != x2.dtype:
        raise ValueError(f"the fused input norm needs a residual of x's shape and dtype; got x {tuple(x2.shape)} "
                         f"{x2.dtype}, residual {tuple(residual.shape)} {residual.dtype}")
    assert norm_weight.shape == (k,), f"norm weight {tuple(norm_weight.shape)} does not match K={k}"
    h = torch.empty_like(x2)  # never residual itself: other programs still read it
    return r2, norm_weight.contiguous(), h, float(eps)


def _rows(x: torch.Tensor, k: int) -> torch.Tensor:
    x2 = x.reshape(-1, k)
    return x2 if x2.stride(-1) == 1 else x2.contiguous()


def _launch(x2: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor,
            norm: tuple[torch.Tensor, torch.Tensor, torch.Tensor, float] | None,
            config: tuple[int, int, int, int] | None, rope: RopeStore | None = None) -> None:
    """One skinny-GEMM launch over out's columns; norm = (residual rows, norm weight, x + residual out, eps)."""
    n, k = weight.shape
    block_n, block_k, warps, stages = config or skinny_gemm_config(n, k, weight.element_size())
    assert k % block_k == 0, (k, block_k)
    r2, norm_w, h, eps = norm if norm is not None else (x2, weight, out, 0.0)  # placeholders, unread without NORM
    if rope is not None:
        assert rope.head_dim % block_n == 0, f"BLOCK_N {block_n} must divide the head dim {rope.head_dim}"
        cache = rope.k_cache
        rope_args = (rope.positions, rope.cos_sin, rope.slot_mapping, cache, rope.v_cache, rope.cos_sin.stride(0),
                     cache.stride(0), cache.stride(1), cache.stride(2), rope.num_q_heads * rope.head_dim,
                     rope.num_kv_heads * rope.head_dim)
        rope_sizes = dict(HEAD_DIM=rope.head_dim, PAGE=cache.shape[1], FP8=cache.dtype == torch.float8_e4m3fn)
    else:  # placeholders, unread without ROPE
        rope_args = (out, out, out, out, out, 0, 0, 0, 0, 0, 0)
        rope_sizes = dict(HEAD_DIM=1, PAGE=1, FP8=False)
    _skinny_gemm_kernel[(triton.cdiv(n, block_n),)](
        x2, weight, bias if bias is not None else weight, out, r2, norm_w, h, x2.shape[0], n, k, x2.stride(0),
        weight.stride(0), out.stride(0), r2.stride(0), h.stride(0), eps, *rope_args, HAS_BIAS=bias is not None,
        NORM=norm is not None, ROPE=rope is not None, **rope_sizes, IEEE=weight.dtype == torch.float32,
        BLOCK_M=MAX_ROWS, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=warps, num_stages=stages,
        **pdl_args(x2.device))


def skinny_gemm_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Plain-PyTorch reference for :func:`skinny_gemm`: the product in fp32, rounded once to x.dtype."""
    y = x.float() @ weight.float().t()
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


def rms_norm_skinny_gemm_ref(x: torch.Tensor, residual: torch.Tensor, norm_weight: torch.Tensor, eps: float,
                             weight: torch.Tensor, bias: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-PyTorch reference for :func:`rms_norm_skinny_gemm`: rms_norm_ref with the residual, then
    skinny_gemm_ref."""
    normed, h = rms_norm_ref(x, norm_weight, eps, residual)
    return skinny_gemm_ref(normed, weight, bias), h
