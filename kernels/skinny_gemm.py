"""Decode-sized linear layers (at most 16 rows): x @ w^T, the weight streamed through pipelined tensor-core dots,
for a qkv projection optionally ahead of the rotary embedding and KV-cache store (qkv_epilogue.py,
qkv_rope_store.py).

Inside the model it beats cuBLAS on mid-sized weights only (Llama-3-8B's qkv and o) and only with programmatic
dependent launch; layers/linear.py decides where it runs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .decode_attention import _num_sms
from .pdl import pdl_args, pdl_enter
from .qkv_epilogue import RopeStore, rope_feature_order, rope_store_epilogue, rope_store_launch
from .split_counters import arrive_with_partial_sums, split_scratch, sum_partial_sums

# Rows this kernel takes: the tensor-core tile pads the batch to 16 rows, so 1..16 rows cost the same weight stream.
MAX_ROWS = 16


@triton.jit
def _dot(x, w, acc, IEEE: tl.constexpr):
    if IEEE:  # fp32 weights: exact products, not TF32's 10-bit mantissas
        return tl.dot(x, w, acc, input_precision="ieee")
    return tl.dot(x, w, acc)


@triton.jit
def _skinny_gemm_kernel(x_ptr, w_ptr, bias_ptr, out_ptr, part_ptr, count_ptr, M, N, K, stride_xm, stride_wn,
                        stride_om, pos_ptr, cos_sin_ptr, slot_ptr, k_cache_ptr, v_cache_ptr,
                        stride_cs, stride_cb, stride_cs_slot, stride_ch, q_features, kv_features,
                        HAS_BIAS: tl.constexpr, ROPE: tl.constexpr, HEAD_DIM: tl.constexpr,
                        PAGE: tl.constexpr, FP8: tl.constexpr, IEEE: tl.constexpr, PDL: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                        SPLIT_K: tl.constexpr):
    """out[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]) for one program's BLOCK_N output features (ROPE: then
    rotated and stored into the KV caches, qkv_epilogue.py).

    SPLIT_K > 1 (small weights, too few BLOCK_N tiles to give every SM a program; never with ROPE): each of a
    tile's SPLIT_K programs streams K / SPLIT_K and writes fp32 partial sums to part_ptr [SPLIT_K, M, N]; the last
    to arrive adds them up in split order and finishes the tile (split_counters.py, as fp8_linear does).

    At decode the work is the weight stream, not the multiply-adds: what matters is how many weight bytes each
    SM keeps in flight. Tensor-core dots let Triton's software pipeline prefetch num_stages [BLOCK_K, BLOCK_N]
    weight tiles ahead (cp.async); timed alone on an H200, Llama-3-8B's o_proj streams at 70% of the copy rate here
    against 59% under cuBLAS. K is a multiple of BLOCK_K (the wrapper checks), so the loop loads without K masks
    and stays vectorised.
    """
    if SPLIT_K > 1:
        pid_n = tl.program_id(0) // SPLIT_K
        split = tl.program_id(0) % SPLIT_K
        k_len = K // SPLIT_K  # a multiple of BLOCK_K (the wrapper checks)
        k_start = split * k_len
    else:  # as the kernel was before K could be split (the hot path of every mid-sized weight)
        pid_n = tl.program_id(0)
        k_len = K
        k_start = 0
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if ROPE:
        offs_n = rope_feature_order(pid_n, q_features + kv_features, HEAD_DIM, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    x_ptrs = x_ptr + offs_m[:, None] * stride_xm + k_start + offs_k[None, :]
    # w's rows seen as a [BLOCK_K, BLOCK_N] tile, contiguous along K; int64 offsets: lm_head is N * K > 2^31 / 2.
    w_ptrs = w_ptr + offs_n[None, :].to(tl.int64) * stride_wn + k_start + offs_k[:, None]
    # The first weight tile is fetched before waiting on the previous kernel (programmatic dependent launch, see
    # pdl.py; every other kernel waits first thing): weights never depend on it, x and the output buffer do. Peeled
    # so that the loop stays pipelined. Two or three tiles peeled ahead of the wait were timed too (session 9, H200,
    # Llama-3-8B bs1 @1k, tests/gpu/run_early_tiles.sh, commit e3c7095): 4.6 ms and 79.8-81.1% MBU against 4.5 ms,
    # 80.4-80.8%. So were up to 32 KB of a small model's programs (half to all of each Qwen3-0.6B projection's slice;
    # session 36, commit 06f9557, run_skinny_early.sh): bs1 1.1 ms and nano-vllm 31.0k tok/s either way.
    w = tl.load(w_ptrs, mask=mask_n[None, :], other=0.0)
    pdl_enter(PDL)
    x = tl.load(x_ptrs, mask=mask_m[:, None], other=0.0)
    acc = _dot(x, w, tl.zeros([BLOCK_M, BLOCK_N], tl.float32), IEEE)
    for _ in range(BLOCK_K, k_len, BLOCK_K):
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K
        x = tl.load(x_ptrs, mask=mask_m[:, None], other=0.0)
        w = tl.load(w_ptrs, mask=mask_n[None, :], other=0.0)
        acc = _dot(x, w, acc, IEEE)
    if SPLIT_K > 1:
        tile = offs_m[:, None] * N + offs_n[None, :]
        mask = mask_m[:, None] & mask_n[None, :]
        if arrive_with_partial_sums(part_ptr + split * M * N + tile, acc, mask, count_ptr + pid_n) != SPLIT_K - 1:
            return
        acc = sum_partial_sums(part_ptr, tile, mask, M * N, count_ptr + pid_n, SPLIT_K, BLOCK_M, BLOCK_N)
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
                config: tuple[int, int, int, int] | None = None, splits: int = 1) -> torch.Tensor:
    """x [..., K] @ weight[N, K]^T (+ bias) -> [..., N] in x.dtype, for at most MAX_ROWS rows (see
    skinny_gemm_supports); fp32 accumulation. `splits`: programs each output tile's K is split over (skinny_split_k
    picks it for small weights; K must be a multiple of splits * BLOCK_K). No host sync: CUDA-graph safe after a
    first split call outside a capture (split_counters)."""
    n, k = weight.shape
    x2 = _rows(x, k)
    m = x2.shape[0]
    if not skinny_gemm_supports(x2, weight):
        raise ValueError(f"skinny_gemm takes at most {MAX_ROWS} rows, K a multiple of 64 and x.dtype == weight.dtype"
                         f" in bf16/fp16/fp32; got x {tuple(x.shape)} {x.dtype}, weight {tuple(weight.shape)} "
                         f"{weight.dtype}: use F.linear")
    out = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m > 0 and n > 0:
        _launch(x2, weight, bias, out, config, splits=splits)
    return out.view(*x.shape[:-1], n)


def _rows(x: torch.Tensor, k: int) -> torch.Tensor:
    x2 = x.reshape(-1, k)
    return x2 if x2.stride(-1) == 1 else x2.contiguous()


def _launch(x2: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor,
            config: tuple[int, int, int, int] | None, rope: RopeStore | None = None, splits: int = 1) -> None:
    """One skinny-GEMM launch over out's columns (with rope, the qkv epilogue; K split over `splits` programs a
    tile without)."""
    n, k = weight.shape
    m = x2.shape[0]
    block_n, block_k, warps, stages = config or skinny_gemm_config(n, k, weight.element_size())
    assert k % (block_k * splits) == 0, f"K {k} must be a multiple of splits {splits} x BLOCK_K {block_k}"
    tiles = triton.cdiv(n, block_n)
    if rope is not None:
        assert rope.head_dim % block_n == 0, f"BLOCK_N {block_n} must divide the head dim {rope.head_dim}"
        assert splits == 1, "the qkv epilogue runs unsplit"
    rope_args, rope_sizes = rope_store_launch(rope, out)
    part, counters = split_scratch(splits, m, n, tiles, x2.device, out)
    _skinny_gemm_kernel[(tiles * splits,)](
        x2, weight, bias if bias is not None else weight, out, part, counters, m, n, k, x2.stride(0),
        weight.stride(0), out.stride(0), *rope_args, HAS_BIAS=bias is not None, ROPE=rope is not None, **rope_sizes,
        IEEE=weight.dtype == torch.float32, BLOCK_M=MAX_ROWS, BLOCK_N=block_n, BLOCK_K=block_k, SPLIT_K=splits,
        num_warps=warps, num_stages=stages, **pdl_args(x2.device))


def skinny_split_k(n: int, k: int, device: torch.device, itemsize: int = 2, waves: int = 1,
                   max_splits: int = 8) -> int:
    """Programs to split each output tile's K over for an [n, k] weight, so that a small weight's few tiles still
    give every SM `waves` programs: at most `max_splits`, each keeping two BLOCK_K steps and dividing K evenly; 1
    where the tiles already fill the SMs, and on the CPU. One wave, not fp8_linear.split_k's two: on an H200
    (tests/gpu/bench_small_gemm.py --skinny, session 21) the best split of every Qwen3-0.6B projection was the one
    that makes about one program per SM (o and down 4, qkv and gate_up 1); two waves cost 0.6-1 us a product."""
    if device.type != "cuda":
        return 1
    block_n, block_k, _, _ = skinny_gemm_config(n, k, itemsize)
    tiles = triton.cdiv(n, block_n)
    splits = max(1, min(max_splits, waves * _num_sms(device) // tiles, k // (2 * block_k)))
    while k % (block_k * splits):
        splits -= 1
    return splits


def skinny_gemm_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Plain-PyTorch reference for :func:`skinny_gemm`: the product in fp32, rounded once to x.dtype."""
    y = x.float() @ weight.float().t()
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)
