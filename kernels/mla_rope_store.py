"""MLA's new tokens positioned and cached in one launch: q_pe rotated in place, the KV latent normed (kv_a_layernorm)
and k_pe rotated straight into the latent cache, where rms_norm, the rotary and store_latent took three.

Each value is computed by the code of the kernels it replaces (rmsnorm.rms_norm_values under rms_norm_launch's
warps, rotary.rotate_pairs, kv_store's float8 saturation), rounded to the activations' dtype where they stored it,
so the cache and q_pe hold the same bits as after the three. k_pe itself is left as it was (only the cache needs it
rotated), and so is the latent.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .kv_store import _saturate_e4m3, store_latent_ref
from .pdl import pdl_args, pdl_enter
from .rmsnorm import rms_norm_launch, rms_norm_ref, rms_norm_values
from .rotary import apply_rotary_ref, load_cos_sin, pair_offsets, rotary_launch, rotate_heads, rotate_pairs


@triton.jit
def _mla_rope_norm_store_kernel(q_ptr, latent_ptr, k_pe_ptr, pos_ptr, cos_sin_ptr, w_ptr, cache_ptr, slot_ptr,
                                stride_qt, stride_qh, stride_lt, stride_kt, stride_cos, stride_cb, stride_cs,
                                num_heads, eps, LATENT: tl.constexpr, HALF: tl.constexpr, IS_NEOX: tl.constexpr,
                                PAGE: tl.constexpr, FP8: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_R: tl.constexpr,
                                BLOCK_H: tl.constexpr, PDL: tl.constexpr):
    """Token t = program_id(0): q_pe[t] rotated in place; cache[slot[t]] = (rms_norm(latent[t]) * w, rotated k_pe[t])
    unless its slot is < 0 (padding)."""
    pdl_enter(PDL)
    t = tl.program_id(0).to(tl.int64)
    offs_r = tl.arange(0, BLOCK_R)
    cos, sin = load_cos_sin(pos_ptr, cos_sin_ptr, stride_cos, offs_r, HALF)
    rotate_heads(q_ptr, stride_qt, stride_qh, q_ptr, stride_qt, stride_qh, num_heads, cos, sin, offs_r, HALF,
                 IS_NEOX, BLOCK_H)
    slot = tl.load(slot_ptr + t).to(tl.int64)
    if slot >= 0:
        dst = cache_ptr + (slot // PAGE) * stride_cb + (slot % PAGE) * stride_cs
        offs = tl.arange(0, BLOCK_L)
        mask = offs < LATENT
        x = tl.load(latent_ptr + t * stride_lt + offs, mask=mask, other=0.0)
        y = rms_norm_values(x, offs, mask, w_ptr, LATENT, eps).to(x.dtype)  # as rms_norm stores it
        if FP8:
            y = _saturate_e4m3(y)
        tl.store(dst + offs, y.to(cache_ptr.dtype.element_ty), mask=mask)
        off1, off2 = pair_offsets(offs_r, HALF, IS_NEOX)
        mask_r = offs_r < HALF
        k1 = tl.load(k_pe_ptr + t * stride_kt + off1, mask=mask_r, other=0.0)
        k2 = tl.load(k_pe_ptr + t * stride_kt + off2, mask=mask_r, other=0.0)
        k1, k2 = rotate_pairs(k1, k2, cos, sin)
        if FP8:
            k1 = _saturate_e4m3(k1)
            k2 = _saturate_e4m3(k2)
        tl.store(dst + LATENT + off1, k1.to(cache_ptr.dtype.element_ty), mask=mask_r)
        tl.store(dst + LATENT + off2, k2.to(cache_ptr.dtype.element_ty), mask=mask_r)


def mla_rope_norm_store(q_pe: torch.Tensor, latent: torch.Tensor, k_pe: torch.Tensor, positions: torch.Tensor,
                        cos_sin_cache: torch.Tensor, is_neox: bool, norm_weight: torch.Tensor, eps: float,
                        cache: torch.Tensor, slot_mapping: torch.Tensor) -> torch.Tensor:
    """Rotate q_pe [T, H, R] IN PLACE (returned) and write each token's (rms_norm(latent) * norm_weight, rotated
    k_pe) into cache [num_blocks, block_size, 1, L + R] at its slot (< 0 skips it, so padding needs no host sync).

    latent [T, L] and k_pe [T, R] as kv_a_proj_with_mqa's output splits them (strided rows, contiguous features,
    left unchanged); cos_sin_cache [max_pos, R] = cat(cos, sin) over the whole rope dim; is_neox as apply_rotary's.
    The cache may be float8 e4m3 (values saturate at +-448, as store_latent's)."""
    T, L = latent.shape
    R = k_pe.shape[-1]
    assert k_pe.shape == (T, R) and q_pe.shape[0] == T and q_pe.shape[-1] == R and slot_mapping.shape == (T,)
    assert cache.dim() == 4 and cache.shape[2:] == (1, L + R) and norm_weight.shape == (L,)
    assert latent.stride(-1) == 1 and k_pe.stride(-1) == 1 and cache.stride(-1) == 1
    assert cos_sin_cache.shape[-1] == R, "the rotary must cover the whole rope dim"
    cos_sin, half, sizes = rotary_launch(q_pe, None, positions, cos_sin_cache)
    if T == 0:
        return q_pe
    block_l, warps = rms_norm_launch(L)  # the norm's warps: its reduction order, so its bits
    _mla_rope_norm_store_kernel[(T,)](
        q_pe, latent, k_pe, positions, cos_sin, norm_weight.contiguous(), cache, slot_mapping, q_pe.stride(0),
        q_pe.stride(1), latent.stride(0), k_pe.stride(0), cos_sin.stride(0), cache.stride(0), cache.stride(1),
        q_pe.shape[1], float(eps), LATENT=L, HALF=half, IS_NEOX=bool(is_neox), PAGE=cache.shape[1],
        FP8=cache.dtype == torch.float8_e4m3fn, BLOCK_L=block_l, BLOCK_R=sizes["BLOCK_R"], BLOCK_H=sizes["BLOCK_HQ"],
        num_warps=warps, **pdl_args(q_pe.device))
    return q_pe


def mla_rope_norm_store_ref(q_pe: torch.Tensor, latent: torch.Tensor, k_pe: torch.Tensor, positions: torch.Tensor,
                            cos_sin_cache: torch.Tensor, is_neox: bool, norm_weight: torch.Tensor, eps: float,
                            cache: torch.Tensor, slot_mapping: torch.Tensor) -> torch.Tensor:
    """The three references in turn (rms_norm_ref, apply_rotary_ref, store_latent_ref), cache in place; returns the
    rotated q_pe as a NEW tensor."""
    q_rot, k_rot = apply_rotary_ref(q_pe, k_pe.unsqueeze(1), positions, cos_sin_cache, is_neox)
    entries = torch.cat([rms_norm_ref(latent, norm_weight, eps), k_rot.squeeze(1)], dim=-1)
    store_latent_ref(entries.unsqueeze(1), cache, slot_mapping)
    return q_rot
