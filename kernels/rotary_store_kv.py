"""Rotary embedding of q and k, then the rotated k and v into the paged KV cache: one launch instead of two.

At small decode batches each launch costs a few microseconds of a step that is otherwise bandwidth-bound,
and this pair runs once per layer. The arithmetic is apply_rotary's, the stores store_kv's (float8
saturation included); only the launch count changes.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .kv_store import store_kv_launch, store_kv_ref, store_token_kv
from .pdl import pdl_args, pdl_enter
from .rotary import apply_rotary_ref, load_cos_sin, q_destination, rotary_launch, rotate_heads


@triton.jit
def _rotary_store_kv_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    pos_ptr,
    cos_sin_ptr,
    k_cache_ptr,
    v_cache_ptr,
    slot_ptr,
    stride_qt,
    stride_qh,
    q_out_ptr,  # where the rotated q goes: q itself (in place) or another buffer of q's shape
    stride_qot,
    stride_qoh,
    stride_cos,
    num_q_heads,
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
    num_kv_heads,
    D,
    HALF: tl.constexpr,
    IS_NEOX: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_HQ: tl.constexpr,
    BLOCK_HK: tl.constexpr,
    PAGE: tl.constexpr,
    BLOCK_D: tl.constexpr,
    FP8: tl.constexpr,
    PDL: tl.constexpr,
):
    pdl_enter(PDL)
    t = tl.program_id(0).to(tl.int64)
    offs_r = tl.arange(0, BLOCK_R)
    cos, sin = load_cos_sin(pos_ptr, cos_sin_ptr, stride_cos, offs_r, HALF)
    rotate_heads(q_ptr, stride_qt, stride_qh, q_out_ptr, stride_qot, stride_qoh, num_q_heads, cos, sin, offs_r, HALF,
                 IS_NEOX, BLOCK_HQ)
    rotate_heads(k_ptr, stride_kt, stride_kh, k_ptr, stride_kt, stride_kh, num_kv_heads, cos, sin, offs_r, HALF,
                 IS_NEOX, BLOCK_HK)
    # Other threads of this program wrote the rotated k (in pairs, another layout than the store's tile):
    # wait for them before reading it back for the cache.
    tl.debug_barrier()
    store_token_kv(t, k_ptr, v_ptr, k_cache_ptr, v_cache_ptr, slot_ptr, stride_kt, stride_kh, stride_vt, stride_vh,
                   stride_kc_b, stride_kc_s, stride_kc_h, stride_vc_b, stride_vc_s, stride_vc_h, num_kv_heads, D,
                   PAGE, BLOCK_HK, BLOCK_D, FP8)


def rotary_store_kv(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    positions: torch.Tensor,
    cos_sin_cache: torch.Tensor,
    is_neox: bool,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
    q_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """apply_rotary(q, k, positions, cos_sin_cache, is_neox) then store_kv(k, v, k_cache, v_cache, slot_mapping),
    in one launch: q and k are rotated IN PLACE (and returned), the rotated k and v written to the caches.
    Shapes and layouts as those two functions take them. `q_out` (q's shape, contiguous last dim; rotary over the
    whole head): the rotated q goes there instead, q is left as it was, and (q_out, k) is returned."""
    cos_sin, half, rotary_sizes = rotary_launch(q, k, positions, cos_sin_cache)
    q_out = q_destination(q, q_out, writes_whole_head=2 * half == q.shape[-1])  # (only the rotated dims are written)
    store_args, store_sizes = store_kv_launch(k, v, k_cache, v_cache, slot_mapping)
    T, Hq, _ = q.shape
    if T == 0:
        return q_out, k
    num_warps = max(rotary_sizes.pop("num_warps"), store_sizes.pop("num_warps"))
    store_sizes.pop("BLOCK_H")  # = BLOCK_HK: the KV heads rounded up to a power of two
    _rotary_store_kv_kernel[(T,)](
        q, k, v, positions, cos_sin, k_cache, v_cache, slot_mapping, q.stride(0), q.stride(1), q_out,
        q_out.stride(0), q_out.stride(1), cos_sin.stride(0), Hq, *store_args, HALF=half, IS_NEOX=bool(is_neox),
        **rotary_sizes, **store_sizes, num_warps=num_warps, **pdl_args(q.device),
    )
    return q_out, k


def rotary_store_kv_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    positions: torch.Tensor,
    cos_sin_cache: torch.Tensor,
    is_neox: bool,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-PyTorch reference for :func:`rotary_store_kv`: NEW rotated q and k; the caches written in place."""
    q_rot, k_rot = apply_rotary_ref(q, k, positions, cos_sin_cache, is_neox)
    store_kv_ref(k_rot, v, k_cache, v_cache, slot_mapping)
    return q_rot, k_rot
