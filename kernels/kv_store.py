"""Scatter the new tokens' K and V (or MLA's latents) into the paged KV cache at the slots given by slot_mapping."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .pdl import pdl_args, pdl_enter


@triton.jit
def _saturate_e4m3(x):
    """x in fp32 clamped to float8 e4m3's range (+-448): the store then saturates, as _saturating_cast does."""
    return tl.minimum(tl.maximum(x.to(tl.float32), -448.0), 448.0)


@triton.jit
def store_token_kv(
    t,
    k_ptr,
    v_ptr,
    k_cache_ptr,
    v_cache_ptr,
    slot_ptr,
    stride_kt,
    stride_kh,
    stride_vt,
    stride_vh,
    stride_kc_b,
    stride_kc_s,
    stride_kc_h,
    stride_vc_b,
    stride_vc_s,
    stride_vc_h,
    num_heads,
    D,
    PAGE: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_D: tl.constexpr,
    FP8: tl.constexpr,  # the caches hold float8 e4m3: saturate at +-448 (torch's CUDA cast gives NaN there)
):
    """Token t's k and v [heads, D] into its cache slot (slot < 0: nothing)."""
    slot = tl.load(slot_ptr + t).to(tl.int64)
    if slot >= 0:
        blk = slot // PAGE
        off = slot % PAGE
        offs_h = tl.arange(0, BLOCK_H)
        offs_d = tl.arange(0, BLOCK_D)
        mask = (offs_h[:, None] < num_heads) & (offs_d[None, :] < D)
        k = tl.load(k_ptr + t * stride_kt + offs_h[:, None] * stride_kh + offs_d[None, :], mask=mask)
        v = tl.load(v_ptr + t * stride_vt + offs_h[:, None] * stride_vh + offs_d[None, :], mask=mask)
        if FP8:
            k = _saturate_e4m3(k)
            v = _saturate_e4m3(v)
        kc = k_cache_ptr + blk * stride_kc_b + off * stride_kc_s
        vc = v_cache_ptr + blk * stride_vc_b + off * stride_vc_s
        tl.store(kc + offs_h[:, None] * stride_kc_h + offs_d[None, :], k.to(k_cache_ptr.dtype.element_ty), mask=mask)
        tl.store(vc + offs_h[:, None] * stride_vc_h + offs_d[None, :], v.to(v_cache_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _store_kv_kernel(
    k_ptr,
    v_ptr,
    k_cache_ptr,
    v_cache_ptr,
    slot_ptr,
    stride_kt,
    stride_kh,
    stride_vt,
    stride_vh,
    stride_kc_b,
    stride_kc_s,
    stride_kc_h,
    stride_vc_b,
    stride_vc_s,
    stride_vc_h,
    num_heads,
    D,
    PAGE: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_D: tl.constexpr,
    FP8: tl.constexpr,
    PDL: tl.constexpr,
):
    pdl_enter(PDL)
    store_token_kv(tl.program_id(0).to(tl.int64), k_ptr, v_ptr, k_cache_ptr, v_cache_ptr, slot_ptr, stride_kt,
                   stride_kh, stride_vt, stride_vh, stride_kc_b, stride_kc_s, stride_kc_h, stride_vc_b, stride_vc_s,
                   stride_vc_h, num_heads, D, PAGE, BLOCK_H, BLOCK_D, FP8)


def store_kv_launch(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                    slot_mapping: torch.Tensor) -> tuple[tuple, dict]:
    """The checks every store wrapper makes, and what it launches with: (the strides and sizes after the
    slot pointer, the constexprs and num_warps) for one program per token."""
    T, H, D = k.shape
    assert v.shape == k.shape and slot_mapping.shape == (T,)
    assert k_cache.shape[2:] == (H, D) and v_cache.shape == k_cache.shape
    assert k.stride(-1) == 1 and v.stride(-1) == 1
    assert k_cache.stride(-1) == 1 and v_cache.stride(-1) == 1
    block_h, block_d = triton.next_power_of_2(H), triton.next_power_of_2(D)
    args = (k.stride(0), k.stride(1), v.stride(0), v.stride(1), k_cache.stride(0), k_cache.stride(1),
            k_cache.stride(2), v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), H, D)
    return args, dict(PAGE=k_cache.shape[1], BLOCK_H=block_h, BLOCK_D=block_d,
                      FP8=k_cache.dtype == torch.float8_e4m3fn, num_warps=min(max(block_h * block_d // 1024, 1), 8))


def store_kv(
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """Write k, v [T, Hkv, D] into k_cache, v_cache [num_blocks, block_size, Hkv, D] in place.

    slot_mapping: int [T], slot = block * block_size + offset; slot < 0 (e.g. -1, padding) skips
    the token. k and v may be strided views (slices of a fused qkv) with a contiguous last dim.
    """
    args, sizes = store_kv_launch(k, v, k_cache, v_cache, slot_mapping)
    if k.shape[0] == 0:
        return
    _store_kv_kernel[(k.shape[0],)](k, v, k_cache, v_cache, slot_mapping, *args, **sizes, **pdl_args(k.device))


def store_kv_ref(
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """Plain-PyTorch reference for :func:`store_kv` (also in place)."""
    block_size = k_cache.shape[1]
    keep = slot_mapping >= 0
    slots = slot_mapping[keep].long()
    blocks, offsets = slots // block_size, slots % block_size
    k_cache[blocks, offsets] = _saturating_cast(k[keep], k_cache.dtype)
    v_cache[blocks, offsets] = _saturating_cast(v[keep], v_cache.dtype)


def _saturating_cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x in dtype, float8 values clamped to the format's range first: torch's float8 cast saturates on the CPU
    but gives NaN beyond +-448 on CUDA, and the store kernel saturates on both."""
    if dtype.is_floating_point and dtype.itemsize == 1:
        bound = torch.finfo(dtype).max
        x = x.clamp(-bound, bound)
    return x.to(dtype)


@triton.jit
def _store_latent_kernel(
    x_ptr,
    rope_ptr,  # HAS_ROPE: the entries' last E - E_X values (MLA's k_pe), else unread
    cache_ptr,
    slot_ptr,
    stride_xt,
    stride_rt,
    stride_cb,
    stride_cs,
    E_X,  # values read from x_ptr: all E without HAS_ROPE
    E,
    PAGE: tl.constexpr,
    BLOCK_E: tl.constexpr,
    HAS_ROPE: tl.constexpr,
    FP8: tl.constexpr,  # the cache holds float8 e4m3: saturate at +-448, as _store_kv_kernel does
    PDL: tl.constexpr,
):
    pdl_enter(PDL)
    t = tl.program_id(0).to(tl.int64)
    slot = tl.load(slot_ptr + t).to(tl.int64)
    if slot >= 0:
        offs = tl.arange(0, BLOCK_E)
        mask = offs < E
        x = tl.load(x_ptr + t * stride_xt + offs, mask=offs < E_X)
        if HAS_ROPE:  # the entry's tail from its own tensor: no concatenated copy of the two first
            r = tl.load(rope_ptr + t * stride_rt + (offs - E_X), mask=(offs >= E_X) & mask)
            x = tl.where(offs < E_X, x, r)
        if FP8:
            x = _saturate_e4m3(x)
        dst = cache_ptr + (slot // PAGE) * stride_cb + (slot % PAGE) * stride_cs
        tl.store(dst + offs, x.to(cache_ptr.dtype.element_ty), mask=mask)


def store_latent(entries: torch.Tensor, cache: torch.Tensor, slot_mapping: torch.Tensor,
                 rope: torch.Tensor | None = None) -> None:
    """Write entries [T, 1, E] (MLA: c_kv ++ k_pe per token) into cache [num_blocks, block_size, 1, E] in place.

    slot_mapping: int [T] as in :func:`store_kv` (< 0 skips the token, so no host sync is needed to
    drop padding). entries may be strided with a contiguous last dim. rope [T, 1, E_rope] (MLA's k_pe, of entries'
    dtype): stored after entries' values (then [T, 1, E - E_rope]), read where it is rather than concatenated first.
    """
    T, one, E_x = entries.shape
    E = E_x + (rope.shape[-1] if rope is not None else 0)
    assert one == 1 and cache.shape[2:] == (1, E) and slot_mapping.shape == (T,)
    assert entries.stride(-1) == 1 and cache.stride(-1) == 1
    assert rope is None or (rope.shape[:2] == (T, 1) and rope.stride(-1) == 1 and rope.dtype == entries.dtype)
    if T == 0:
        return
    BLOCK_E = triton.next_power_of_2(E)
    _store_latent_kernel[(T,)](
        entries,
        rope if rope is not None else entries,
        cache,
        slot_mapping,
        entries.stride(0),
        rope.stride(0) if rope is not None else 0,
        cache.stride(0),
        cache.stride(1),
        E_x,
        E,
        PAGE=cache.shape[1],
        BLOCK_E=BLOCK_E,
        HAS_ROPE=rope is not None,
        FP8=cache.dtype == torch.float8_e4m3fn,
        num_warps=min(max(BLOCK_E // 256, 1), 8),
        **pdl_args(entries.device),
    )


def store_latent_ref(entries: torch.Tensor, cache: torch.Tensor, slot_mapping: torch.Tensor,
                     rope: torch.Tensor | None = None) -> None:
    """Plain-PyTorch reference for :func:`store_latent` (also in place)."""
    if rope is not None:
        entries = torch.cat([entries, rope], dim=-1)
    block_size = cache.shape[1]
    keep = slot_mapping >= 0
    slots = slot_mapping[keep].long()
    cache[slots // block_size, slots % block_size] = _saturating_cast(entries[keep], cache.dtype)
