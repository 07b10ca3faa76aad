"""Qwen3's per-head RMSNorm of q and k followed by rotary embedding, in place, in one kernel per step, optionally
followed by the store of the normalised, rotated k and of v into the paged KV cache.

Four launches per layer become one (q norm, k norm, rotary, KV store): at small batches each costs ~2 us of a
step that is otherwise bandwidth-bound. The arithmetic and its roundings are those of the kernels it
replaces (rms_norm: float32 statistics and scale, one rounding to the activation dtype; apply_rotary:
float32 on the rounded values; store_kv, float8 saturation included); only the order of the sum of squares
differs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .kv_store import store_kv_launch, store_kv_ref, store_token_kv
from .pdl import pdl_args, pdl_enter
from .rmsnorm import rms_norm_ref
from .rotary import apply_rotary_ref, load_cos_sin, pair_offsets, q_destination, rotary_launch


@triton.jit
def _norm_rotate_heads(
    x_ptr,
    w_ptr,
    stride_t,
    stride_h,
    y_ptr,
    stride_yt,
    stride_yh,
    num_heads,
    eps,
    cos,
    sin,
    offs_r,
    HEAD_DIM: tl.constexpr,
    HALF: tl.constexpr,
    IS_NEOX: tl.constexpr,
    BLOCK_HEADS: tl.constexpr,
    BLOCK_PASS: tl.constexpr,
):
    # The rotated pairs (x1, x2) and the dims past 2 * HALF (partial rotary) of every head of one token, into y (x
    # itself for in place).
    t = tl.program_id(0).to(tl.int64)
    offs_h = tl.arange(0, BLOCK_HEADS)
    off1, off2 = pair_offsets(offs_r, HALF, IS_NEOX)
    offs_p = 2 * HALF + tl.arange(0, BLOCK_PASS)
    mask_h = offs_h[:, None] < num_heads
    mask = mask_h & (offs_r[None, :] < HALF)
    mask_p = mask_h & (offs_p[None, :] < HEAD_DIM)
    base = x_ptr + t * stride_t + offs_h[:, None] * stride_h
    x1 = tl.load(base + off1[None, :], mask=mask, other=0.0)
    x2 = tl.load(base + off2[None, :], mask=mask, other=0.0)
    xp = tl.load(base + offs_p[None, :], mask=mask_p, other=0.0)
    x1f, x2f, xpf = x1.to(tl.float32), x2.to(tl.float32), xp.to(tl.float32)
    sq = tl.sum(x1f * x1f, axis=1) + tl.sum(x2f * x2f, axis=1) + tl.sum(xpf * xpf, axis=1)
    inv = (1.0 / tl.sqrt(sq / HEAD_DIM + eps))[:, None]
    w1 = tl.load(w_ptr + off1, mask=offs_r < HALF, other=0.0).to(tl.float32)[None, :]
    w2 = tl.load(w_ptr + off2, mask=offs_r < HALF, other=0.0).to(tl.float32)[None, :]
    wp = tl.load(w_ptr + offs_p, mask=offs_p < HEAD_DIM, other=0.0).to(tl.float32)[None, :]
    # Round where the separate kernels round: the normalised head is stored, then rotated in float32.
    n1 = (x1f * inv * w1).to(x1.dtype).to(tl.float32)
    n2 = (x2f * inv * w2).to(x1.dtype).to(tl.float32)
    npass = (xpf * inv * wp).to(x1.dtype)
    out = y_ptr + t * stride_yt + offs_h[:, None] * stride_yh
    tl.store(out + off1[None, :], (n1 * cos[None, :] - n2 * sin[None, :]).to(x1.dtype), mask=mask)
    tl.store(out + off2[None, :], (n2 * cos[None, :] + n1 * sin[None, :]).to(x1.dtype), mask=mask)
    tl.store(out + offs_p[None, :], npass, mask=mask_p)


@triton.jit
def _qk_norm_rotary_kernel(
    q_ptr,
    k_ptr,
    qw_ptr,
    kw_ptr,
    pos_ptr,
    cache_ptr,
    stride_qt,
    stride_qh,
    stride_kt,
    stride_kh,
    q_out_ptr,  # where the normalised, rotated q goes: q itself (in place) or another buffer of q's shape
    stride_qot,
    stride_qoh,
    stride_cache,
    num_q_heads,
    num_k_heads,
    eps,
    # STORE: v and the paged caches with their strides, as store_token_kv takes them (unread otherwise)
    v_ptr, k_cache_ptr, v_cache_ptr, slot_ptr, stride_vt, stride_vh,
    stride_kc_b, stride_kc_s, stride_kc_h, stride_vc_b, stride_vc_s, stride_vc_h,
    HEAD_DIM: tl.constexpr,
    HALF: tl.constexpr,
    IS_NEOX: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_PASS: tl.constexpr,
    BLOCK_HQ: tl.constexpr,
    BLOCK_HK: tl.constexpr,
    STORE: tl.constexpr,
    PAGE: tl.constexpr,
    BLOCK_D: tl.constexpr,
    FP8: tl.constexpr,
    PDL: tl.constexpr,
):
    pdl_enter(PDL)
    offs_r = tl.arange(0, BLOCK_R)
    cos, sin = load_cos_sin(pos_ptr, cache_ptr, stride_cache, offs_r, HALF)
    _norm_rotate_heads(q_ptr, qw_ptr, stride_qt, stride_qh, q_out_ptr, stride_qot, stride_qoh, num_q_heads, eps, cos,
                       sin, offs_r, HEAD_DIM, HALF, IS_NEOX, BLOCK_HQ, BLOCK_PASS)
    _norm_rotate_heads(k_ptr, kw_ptr, stride_kt, stride_kh, k_ptr, stride_kt, stride_kh, num_k_heads, eps, cos, sin,
                       offs_r, HEAD_DIM, HALF, IS_NEOX, BLOCK_HK, BLOCK_PASS)
    if STORE:
        # Other threads of this program wrote the normalised, rotated k (in pairs, another layout than the
        # store's tile): wait for them before reading it back for the cache.
        tl.debug_barrier()
        store_token_kv(tl.program_id(0).to(tl.int64), k_ptr, v_ptr, k_cache_ptr, v_cache_ptr, slot_ptr, stride_kt,
                       stride_kh, stride_vt, stride_vh, stride_kc_b, stride_kc_s, stride_kc_h, stride_vc_b,
                       stride_vc_s, stride_vc_h, num_k_heads, HEAD_DIM, PAGE, BLOCK_HK, BLOCK_D, FP8)


def qk_norm_rotary(
    q: torch.Tensor,
    k: torch.Tensor,
    positions: torch.Tensor,
    cos_sin_cache: torch.Tensor,
    q_weight: torch.Tensor,
    k_weight: torch.Tensor,
    eps: float,
    is_neox: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm each head of q [T, Hq, D] and k [T, Hk, D] (weights [D]), then rotate them; IN PLACE, returns them.

    positions int [T]; cos_sin_cache [max_pos, rot_dim] = cat(cos, sin), rot_dim <= D (the dims past it are
    normalised, not rotated); is_neox as in apply_rotary. q and k may be strided views (slices of a fused
    qkv output) with a contiguous last dimension.
    """
    return _launch(q, k, positions, cos_sin_cache, q_weight, k_weight, eps, is_neox)


def qk_norm_rotary_store_kv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor,
                            cos_sin_cache: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor, eps: float,
                            is_neox: bool, k_cache: torch.Tensor, v_cache: torch.Tensor,
                            slot_mapping: torch.Tensor,
                            q_out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """qk_norm_rotary(q, k, ...) then store_kv(k, v, k_cache, v_cache, slot_mapping), in one launch: q and k are
    normalised and rotated IN PLACE (and returned), then k and v written to the caches. Shapes and layouts as
    those two functions take them. `q_out` (q's shape, contiguous last dim): q's result goes there instead, q is
    left as it was, and (q_out, k) is returned."""
    return _launch(q, k, positions, cos_sin_cache, q_weight, k_weight, eps, is_neox,
                   (v, k_cache, v_cache, slot_mapping), q_out)


def _launch(q, k, positions, cos_sin_cache, q_weight, k_weight, eps, is_neox, store=None, q_out=None):
    """One program per token; store: (v, k_cache, v_cache, slot_mapping) for the KV store after the rotation."""
    T, Hq, D = q.shape
    assert k is not None and q_weight.shape == (D,) and k_weight.shape == (D,)
    q_out = q_destination(q, q_out)  # (every dim of a head is written, the pass-through ones normalised)
    cache, half, sizes = rotary_launch(q, k, positions, cos_sin_cache)
    if store is not None:
        v, k_cache, v_cache, slot_mapping = store
        (_, _, *store_args, _, _), store_sizes = store_kv_launch(k, v, k_cache, v_cache, slot_mapping)
        sizes["num_warps"] = max(sizes["num_warps"], store_sizes.pop("num_warps"))
        store_sizes.pop("BLOCK_H")  # = BLOCK_HK: the KV heads rounded up to a power of two
        store_ptrs = (v, k_cache, v_cache, slot_mapping)
    else:  # placeholders, unread without STORE
        store_ptrs, store_args, store_sizes = (q, q, q, positions), (0,) * 8, dict(PAGE=1, BLOCK_D=1, FP8=False)
    if T == 0:
        return q_out, k
    _qk_norm_rotary_kernel[(T,)](
        q, k, q_weight.contiguous(), k_weight.contiguous(), positions, cache,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), q_out, q_out.stride(0), q_out.stride(1), cache.stride(0),
        Hq, k.shape[1], float(eps),
        *store_ptrs, *store_args,
        HEAD_DIM=D, HALF=half, IS_NEOX=bool(is_neox), BLOCK_PASS=max(triton.next_power_of_2(D - 2 * half), 1),
        STORE=store is not None, **store_sizes, **sizes,
        **pdl_args(q.device),
    )
    return q_out, k


def qk_norm_rotary_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    positions: torch.Tensor,
    cos_sin_cache: torch.Tensor,
    q_weight: torch.Tensor,
    k_weight: torch.Tensor,
    eps: float,
    is_neox: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The separate ops it fuses: rms_norm_ref per head, then apply_rotary_ref (new tensors)."""
    return apply_rotary_ref(rms_norm_ref(q, q_weight, eps), rms_norm_ref(k, k_weight, eps), positions, cos_sin_cache,
                            is_neox)


def qk_norm_rotary_store_kv_ref(q, k, v, positions, cos_sin_cache, q_weight, k_weight, eps, is_neox, k_cache,
                                v_cache, slot_mapping) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-PyTorch reference for :func:`qk_norm_rotary_store_kv` (same arguments): NEW q and k; the caches
    written in place."""
    q_out, k_out = qk_norm_rotary_ref(q, k, positions, cos_sin_cache, q_weight, k_weight, eps, is_neox)
    store_kv_ref(k_out, v, k_cache, v_cache, slot_mapping)
    return q_out, k_out
