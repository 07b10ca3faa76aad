"""Rotary position embedding (neox and GPT-J styles, partial rotary) applied in place to q and k."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .pdl import pdl_args, pdl_enter


@triton.jit
def pair_offsets(offs_r, HALF: tl.constexpr, IS_NEOX: tl.constexpr):
    """Offsets of the two members of each rotated pair: the two halves (neox) or neighbours (GPT-J)."""
    if IS_NEOX:
        off1 = offs_r
        off2 = offs_r + HALF
    else:
        off1 = offs_r * 2
        off2 = offs_r * 2 + 1
    return off1, off2


@triton.jit
def load_cos_sin(pos_ptr, cache_ptr, stride_cache, offs_r, HALF: tl.constexpr):
    """This program's token's cos and sin ([BLOCK_R] fp32, zero past HALF) from the cat(cos, sin) table."""
    pos = tl.load(pos_ptr + tl.program_id(0)).to(tl.int64)
    mask_r = offs_r < HALF
    cos = tl.load(cache_ptr + pos * stride_cache + offs_r, mask=mask_r, other=0.0).to(tl.float32)
    sin = tl.load(cache_ptr + pos * stride_cache + HALF + offs_r, mask=mask_r, other=0.0).to(tl.float32)
    return cos, sin


@triton.jit
def rotate_heads(
    x_ptr,
    stride_t,
    stride_h,
    y_ptr,
    stride_yt,
    stride_yh,
    num_heads,
    cos,
    sin,
    offs_r,
    HALF: tl.constexpr,
    IS_NEOX: tl.constexpr,
    BLOCK_HEADS: tl.constexpr,
):
    """Rotates x[t, :, :2*HALF] of this program's token t into y (x itself for in place; y's dims past 2*HALF are
    not written); cos/sin: [BLOCK_R] fp32."""
    t = tl.program_id(0).to(tl.int64)
    offs_h = tl.arange(0, BLOCK_HEADS)
    off1, off2 = pair_offsets(offs_r, HALF, IS_NEOX)
    mask = (offs_h[:, None] < num_heads) & (offs_r[None, :] < HALF)
    base = x_ptr + t * stride_t + offs_h[:, None] * stride_h
    x1 = tl.load(base + off1[None, :], mask=mask, other=0.0)
    x2 = tl.load(base + off2[None, :], mask=mask, other=0.0)
    o1, o2 = rotate_pairs(x1, x2, cos[None, :], sin[None, :])
    out = y_ptr + t * stride_yt + offs_h[:, None] * stride_yh
    tl.store(out + off1[None, :], o1, mask=mask)
    tl.store(out + off2[None, :], o2, mask=mask)


@triton.jit
def rotate_pairs(x1, x2, cos, sin):
    """The rotated pairs (x1, x2) by (cos, sin) in fp32, rounded back to x's dtype: every kernel that rotates computes
    it here."""
    x1f = x1.to(tl.float32)
    x2f = x2.to(tl.float32)
    o1 = x1f * cos - x2f * sin
    o2 = x2f * cos + x1f * sin
    return o1.to(x1.dtype), o2.to(x2.dtype)


@triton.jit
def _rotary_kernel(
    q_ptr,
    k_ptr,
    pos_ptr,
    cache_ptr,
    stride_qt,
    stride_qh,
    stride_kt,
    stride_kh,
    stride_cache,
    num_q_heads,
    num_k_heads,
    HALF: tl.constexpr,
    IS_NEOX: tl.constexpr,
    HAS_K: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_HQ: tl.constexpr,
    BLOCK_HK: tl.constexpr,
    PDL: tl.constexpr,
):
    pdl_enter(PDL)
    offs_r = tl.arange(0, BLOCK_R)
    cos, sin = load_cos_sin(pos_ptr, cache_ptr, stride_cache, offs_r, HALF)
    rotate_heads(q_ptr, stride_qt, stride_qh, q_ptr, stride_qt, stride_qh, num_q_heads, cos, sin, offs_r, HALF,
                 IS_NEOX, BLOCK_HQ)
    if HAS_K:
        rotate_heads(k_ptr, stride_kt, stride_kh, k_ptr, stride_kt, stride_kh, num_k_heads, cos, sin, offs_r, HALF,
                     IS_NEOX, BLOCK_HK)


def rotary_launch(q: torch.Tensor, k: torch.Tensor | None, positions: torch.Tensor,
                  cos_sin_cache: torch.Tensor) -> tuple[torch.Tensor, int, dict]:
    """The checks every rotary wrapper makes, and what it launches with: (the cos/sin table with a contiguous
    last dim, rot_dim / 2, launch sizes BLOCK_R, BLOCK_HQ, BLOCK_HK and num_warps for one program per token)."""
    T, Hq, D = q.shape
    rot_dim = cos_sin_cache.shape[-1]
    assert rot_dim % 2 == 0 and rot_dim <= D, f"rot_dim {rot_dim} vs head dim {D}"
    assert q.stride(-1) == 1, "q's last dimension must be contiguous"
    if k is not None:
        assert k.shape[0] == T and k.shape[-1] == D and k.stride(-1) == 1
    assert positions.shape == (T,)
    cache = cos_sin_cache if cos_sin_cache.stride(-1) == 1 else cos_sin_cache.contiguous()
    half = rot_dim // 2
    block_r, block_hq = triton.next_power_of_2(half), triton.next_power_of_2(Hq)
    block_hk = triton.next_power_of_2(max(k.shape[1] if k is not None else 0, 1))
    return cache, half, dict(BLOCK_R=block_r, BLOCK_HQ=block_hq, BLOCK_HK=block_hk,
                             num_warps=min(max(block_hq * block_r // 512, 1), 8))


def q_destination(q: torch.Tensor, q_out: torch.Tensor | None, writes_whole_head: bool = True) -> torch.Tensor:
    """Where a wrapper that positions q writes it: q itself (in place) when q_out is None, else q_out, which must
    have q's shape and a contiguous last dim, and (where the kernel writes only the rotated dims) a rotary that covers
    the whole head, or q_out's other dims would be left unwritten."""
    if q_out is None:
        return q
    if q_out.shape != q.shape or q_out.stride(-1) != 1 or not writes_whole_head:
        raise ValueError(f"q_out {tuple(q_out.shape)} must have q's shape {tuple(q.shape)} and a contiguous last "
                         f"dim{'' if writes_whole_head else ', and the rotary must cover the whole head'}")
    return q_out


def apply_rotary(
    q: torch.Tensor,
    k: torch.Tensor | None,
    positions: torch.Tensor,
    cos_sin_cache: torch.Tensor,
    is_neox: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rotate q [T, Hq, D] and k [T, Hk, D] IN PLACE and return them (the same tensors).

    positions: int [T]; cos_sin_cache: [max_pos, rot_dim] = cat(cos, sin) along the last dim,
    rot_dim <= D (only the first rot_dim dims of each head are rotated). q and k may be strided
    views (e.g. slices of a fused qkv output) as long as their last dimension is contiguous.
    is_neox: rotate halves (x[:rot/2], x[rot/2:]); else GPT-J style pairs (x[0::2], x[1::2]).
    """
    T, Hq, _ = q.shape
    cache, half, sizes = rotary_launch(q, k, positions, cos_sin_cache)
    if T == 0:
        return q, k
    Hk = k.shape[1] if k is not None else 0
    kk = k if k is not None else q
    _rotary_kernel[(T,)](
        q,
        kk,
        positions,
        cache,
        q.stride(0),
        q.stride(1),
        kk.stride(0),
        kk.stride(1),
        cache.stride(0),
        Hq,
        Hk,
        HALF=half,
        IS_NEOX=bool(is_neox),
        HAS_K=k is not None,
        **sizes,
        **pdl_args(q.device),
    )
    return q, k


def _rotate_ref(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, is_neox: bool) -> torch.Tensor:
    rot_dim = cos.shape[-1] * 2
    xr, xpass = x[..., :rot_dim].float(), x[..., rot_dim:]
    if is_neox:
        x1, x2 = xr.chunk(2, dim=-1)
    else:
        x1, x2 = xr[..., 0::2], xr[..., 1::2]
    o1 = x1 * cos - x2 * sin
    o2 = x2 * cos + x1 * sin
    if is_neox:
        out = torch.cat([o1, o2], dim=-1)
    else:
        out = torch.stack([o1, o2], dim=-1).flatten(-2)
    return torch.cat([out.to(x.dtype), xpass], dim=-1)


def apply_rotary_ref(
    q: torch.Tensor,
    k: torch.Tensor | None,
    positions: torch.Tensor,
    cos_sin_cache: torch.Tensor,
    is_neox: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Plain-PyTorch reference for :func:`apply_rotary`; returns NEW tensors (inputs untouched)."""
    cos, sin = cos_sin_cache[positions.long()].float().chunk(2, dim=-1)  # [T, rot/2] each
    cos, sin = cos[:, None, :], sin[:, None, :]
    q_out = _rotate_ref(q, cos, sin, is_neox)
    k_out = _rotate_ref(k, cos, sin, is_neox) if k is not None else None
    return q_out, k_out


def build_cos_sin_cache(inv_freq: torch.Tensor, max_pos: int, mscale: float = 1.0) -> torch.Tensor:
    """fp32 [max_pos, 2 * len(inv_freq)] table: cat(cos(p * inv_freq), sin(p * inv_freq)) * mscale."""
    t = torch.arange(max_pos, dtype=torch.float32, device=inv_freq.device)
    freqs = torch.outer(t, inv_freq.float())
    return torch.cat([freqs.cos() * mscale, freqs.sin() * mscale], dim=-1)
