"""The qkv projection's epilogue that rotates q and k and stores k and v into the paged caches (skinny_gemm's ROPE
mode, kernels/qkv_rope_store.py): the feature order it needs, the epilogue itself, and its launch arguments."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .kv_store import _saturate_e4m3


@dataclass
class RopeStore:
    """The rotary embedding and KV-cache store a qkv projection's epilogue applies (kernels/qkv_rope_store.py):
    neox rotation of whole heads, rows' positions and slots, the caches [blocks, PAGE, num_kv_heads, head_dim]."""

    positions: torch.Tensor
    cos_sin: torch.Tensor  # [max_pos, head_dim] = cat(cos, sin), last dim contiguous
    slot_mapping: torch.Tensor
    k_cache: torch.Tensor
    v_cache: torch.Tensor
    num_q_heads: int
    num_kv_heads: int
    head_dim: int


def rope_store_fits(n: int, block_n: int, rope: RopeStore) -> bool:
    """Whether a qkv projection of n output features, block_n a program, takes this epilogue: n covers the q and
    both kv heads, the rotary embedding spans whole heads, programs split heads evenly, and the caches hold
    [blocks, PAGE, num_kv_heads, head_dim] with contiguous heads, k and v alike."""
    return (n == (rope.num_q_heads + 2 * rope.num_kv_heads) * rope.head_dim
            and rope.cos_sin.shape[-1] == rope.head_dim and rope.head_dim % block_n == 0
            and rope.k_cache.shape[2:] == (rope.num_kv_heads, rope.head_dim)
            and rope.v_cache.shape == rope.k_cache.shape and rope.v_cache.stride() == rope.k_cache.stride()
            and rope.k_cache.stride(-1) == 1)


def rope_store_launch(rope: RopeStore | None, placeholder: torch.Tensor) -> tuple[tuple, dict]:
    """(runtime arguments, constexprs) of rope_store_epilogue for a kernel launch: rope's tensors, cache strides and
    feature counts, or placeholders (never read) with rope None."""
    if rope is None:
        return (placeholder,) * 5 + (0,) * 6, dict(HEAD_DIM=1, PAGE=1, FP8=False)
    cache = rope.k_cache
    cos_sin = rope.cos_sin if rope.cos_sin.stride(-1) == 1 else rope.cos_sin.contiguous()
    args = (rope.positions, cos_sin, rope.slot_mapping, cache, rope.v_cache, cos_sin.stride(0), cache.stride(0),
            cache.stride(1), cache.stride(2), rope.num_q_heads * rope.head_dim, rope.num_kv_heads * rope.head_dim)
    return args, dict(HEAD_DIM=rope.head_dim, PAGE=cache.shape[1], FP8=cache.dtype == torch.float8_e4m3fn)


@triton.jit
def rope_feature_order(pid_n, rotated_features, HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr):
    """The output features of program pid_n of a qkv projection with the rotary embedding in its epilogue: in the
    q and k heads, BLOCK_N / 2 neox pairs (feature j of a head and its partner j + HEAD_DIM / 2) side by side, so
    that the program holds both members of each pair it rotates; in the v heads, BLOCK_N consecutive features."""
    start = pid_n * BLOCK_N
    idx = tl.arange(0, BLOCK_N)
    pair_start = (start % HEAD_DIM) // 2  # the head's HEAD_DIM / BLOCK_N programs take its pairs in turn
    paired = (start - start % HEAD_DIM) + (idx % 2) * (HEAD_DIM // 2) + pair_start + idx // 2
    return tl.where(start < rotated_features, paired, start + idx)


@triton.jit
def rope_store_epilogue(y, pid_n, offs_m, offs_n, mask_m, pos_ptr, cos_sin_ptr, slot_ptr, k_cache_ptr, v_cache_ptr,
                        stride_cs, stride_cb, stride_cs_slot, stride_ch, q_features, kv_features,
                        HEAD_DIM: tl.constexpr, PAGE: tl.constexpr, FP8: tl.constexpr, BLOCK_M: tl.constexpr,
                        BLOCK_N: tl.constexpr):
    """A qkv projection's tile y [BLOCK_M, BLOCK_N] (features in rope_feature_order, rounded to the output dtype
    as the projection alone would store it) rotated where it holds q or k pairs (neox, the whole head, as
    kernels/rotary.py on the rounded values), and its k or v features stored into the paged caches at each row's
    slot (slot < 0: nothing), as kernels/kv_store.py stores them. Returns the tile to store as the output."""
    start = pid_n * BLOCK_N
    HALF_N: tl.constexpr = BLOCK_N // 2
    if start < q_features + kv_features:
        pos = tl.load(pos_ptr + offs_m, mask=mask_m, other=0).to(tl.int64)
        pair = (start % HEAD_DIM) // 2 + tl.arange(0, HALF_N)
        table = cos_sin_ptr + pos[:, None] * stride_cs + pair[None, :]
        cos = tl.load(table, mask=mask_m[:, None], other=0.0).to(tl.float32)
        sin = tl.load(table + HEAD_DIM // 2, mask=mask_m[:, None], other=0.0).to(tl.float32)
        x1, x2 = tl.split(tl.reshape(y.to(tl.float32), [BLOCK_M, HALF_N, 2]))
        o1 = x1 * cos - x2 * sin
        o2 = x2 * cos + x1 * sin
        y = tl.reshape(tl.join(o1, o2), [BLOCK_M, BLOCK_N]).to(y.dtype)
    if start >= q_features:
        slot = tl.load(slot_ptr + offs_m, mask=mask_m, other=-1).to(tl.int64)
        is_k = start < q_features + kv_features
        feature = offs_n - tl.where(is_k, q_features, q_features + kv_features)
        entry = ((slot // PAGE) * stride_cb + (slot % PAGE) * stride_cs_slot)[:, None] \
            + ((feature // HEAD_DIM) * stride_ch + feature % HEAD_DIM)[None, :]
        mask = (mask_m & (slot >= 0))[:, None]
        value = y
        if FP8:  # saturate at +-448, as store_kv (torch's CUDA cast gives NaN there)
            value = _saturate_e4m3(y)
        if is_k:
            tl.store(k_cache_ptr + entry, value.to(k_cache_ptr.dtype.element_ty), mask=mask)
        else:
            tl.store(v_cache_ptr + entry, value.to(v_cache_ptr.dtype.element_ty), mask=mask)
    return y
