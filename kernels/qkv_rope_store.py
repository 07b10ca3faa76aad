"""A decode-sized qkv projection with the rotary embedding and the KV-cache store in its epilogue: skinny_gemm,
apply_rotary and store_kv in one launch (Qwen3: with each q and k head's RMSNorm before the rotation)."""

from __future__ import annotations

import os
from dataclasses import replace

import torch

from .qk_norm_rotary import qk_norm_rotary_store_kv_ref
from .rotary_store_kv import rotary_store_kv_ref
from .qkv_epilogue import RopeStore
from .skinny_gemm import _launch, _rows, skinny_gemm_config, skinny_gemm_ref, skinny_gemm_supports

# With the per-head norm a program takes one whole head (BLOCK_N = head_dim): fewer, wider programs than
# skinny_gemm_config's (Qwen3-8B's qkv: 48 instead of 96). Untimed; SPMD_QKV_NORM_CONFIG=BLOCK_K,warps,stages
# overrides the rest of the tile for tuning runs.
_NORM_TILE = tuple(int(v) for v in os.environ.get("SPMD_QKV_NORM_CONFIG", "128,4,4").split(","))


def qkv_rope_store_config(n: int, k: int, itemsize: int, rope: RopeStore) -> tuple[int, int, int, int]:
    """(BLOCK_N, BLOCK_K, num_warps, num_stages) of qkv_rope_store: skinny_gemm's, or whole heads with the norm."""
    if rope.q_norm is None:
        return skinny_gemm_config(n, k, itemsize)
    block_k, warps, stages = _NORM_TILE
    while k % block_k:  # K is a multiple of 64 (skinny_gemm_supports)
        block_k //= 2
    return rope.head_dim, block_k, warps, stages if itemsize == 2 else min(stages, 2)


def qkv_rope_store_supports(x: torch.Tensor, weight: torch.Tensor, rope: RopeStore) -> bool:
    """Whether qkv_rope_store takes this projection: skinny_gemm's operands, a weight of (q + 2 kv heads) * head_dim
    rows, the rotary embedding over whole heads, and output tiles that split heads evenly."""
    n, k = weight.shape
    block_n = qkv_rope_store_config(n, k, weight.element_size(), rope)[0]
    norm_ok = rope.q_norm is None or (rope.q_norm.shape == rope.k_norm.shape == (rope.head_dim,)
                                      and rope.head_dim in (16, 32, 64, 128, 256))
    return (skinny_gemm_supports(x, weight) and n == (rope.num_q_heads + 2 * rope.num_kv_heads) * rope.head_dim
            and rope.cos_sin.shape[-1] == rope.head_dim and rope.head_dim % block_n == 0 and norm_ok
            and rope.k_cache.shape[2:] == (rope.num_kv_heads, rope.head_dim)
            and rope.v_cache.shape == rope.k_cache.shape and rope.v_cache.stride() == rope.k_cache.stride()
            and rope.k_cache.stride(-1) == 1)


def qkv_rope_store(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, rope: RopeStore,
                   config: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """qkv = x @ weight^T (+ bias) for at most 16 rows, its q and k heads rotated (neox, rope.cos_sin over the whole
    head at rope.positions; with rope.q_norm, each RMS-normalised first) and its k and v written into the paged
    caches at rope.slot_mapping (slot < 0: not stored), in one launch. Returns qkv [..., N] with q and k rotated."""
    n, k = weight.shape
    x2 = _rows(x, k)
    m = x2.shape[0]
    if not qkv_rope_store_supports(x2, weight, rope):
        raise ValueError(f"qkv_rope_store takes skinny_gemm's operands, a weight of (q + 2 kv heads) * head_dim rows, "
                         f"rotary over whole heads and output tiles that divide head_dim; got x {tuple(x.shape)} "
                         f"{x.dtype}, weight {tuple(weight.shape)} {weight.dtype}, heads {rope.num_q_heads}/"
                         f"{rope.num_kv_heads} x {rope.head_dim}, rot_dim {rope.cos_sin.shape[-1]}: use the "
                         f"projection, then rotary_store_kv")
    assert rope.positions.shape == (m,) and rope.slot_mapping.shape == (m,)
    out = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if rope.cos_sin.stride(-1) != 1:
        rope = replace(rope, cos_sin=rope.cos_sin.contiguous())
    if m > 0:
        _launch(x2, weight, bias, out, config or qkv_rope_store_config(n, k, weight.element_size(), rope), rope)
    return out.view(*x.shape[:-1], n)


def qkv_rope_store_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                       rope: RopeStore) -> torch.Tensor:
    """Plain-PyTorch reference for :func:`qkv_rope_store`: the projection, then rotary_store_kv_ref on its heads, or
    qk_norm_rotary_store_kv_ref with rope.q_norm (the caches written in place)."""
    qkv = skinny_gemm_ref(x, weight, bias)
    qkv2 = qkv.reshape(-1, qkv.shape[-1])
    hq, hkv, d = rope.num_q_heads, rope.num_kv_heads, rope.head_dim
    parts = qkv2.split([hq * d, hkv * d, hkv * d], -1)
    q, k, v = (t.reshape(-1, heads, d) for t, heads in zip(parts, (hq, hkv, hkv)))
    if rope.q_norm is not None:
        q_rot, k_rot = qk_norm_rotary_store_kv_ref(q, k, v, rope.positions, rope.cos_sin, rope.q_norm, rope.k_norm,
                                                   rope.norm_eps, True, rope.k_cache, rope.v_cache, rope.slot_mapping)
    else:
        q_rot, k_rot = rotary_store_kv_ref(q, k, v, rope.positions, rope.cos_sin, True, rope.k_cache, rope.v_cache,
                                           rope.slot_mapping)
    out = torch.cat([q_rot.flatten(1), k_rot.flatten(1), v.flatten(1)], -1)
    return out.view(qkv.shape)
