"""Experiment (session 37): decode attention over a float8 cache computed transposed, tokens x heads, so that a
tile's tokens are the dots' M side and sm_90 runs them as wgmma: scores^T = K q^T (float8 K as stored against q
rounded to float8 per head, or K widened to fp16), out^T = V^T p^T with V widened to fp16 as loaded. The engine's
kernel runs decode's few query heads as M of a 16-row mma.sync, and over a float8 cache reached 66% of the copy rate
(session 36). time_decode_swapped.py times the two."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from spmd_kernels.decode_attention import (_LOG2E, choose_num_splits, program_order, program_row, reduce_splits,
                                          split_range, split_scratch, store_split)
from spmd_kernels.fp8_widen import e4m3_to_f16
from spmd_kernels.pdl import pdl_args, pdl_enter


@triton.jit(do_not_specialize=["stride_bt", "stride_ml_b", "stride_ml_h", "num_splits"])
def _decode_split_kernel_t(
    q_ptr, k_cache_ptr, v_cache_ptr, block_tables_ptr, context_lens_ptr, out_ptr, mid_o_ptr, mid_lse_ptr, order_ptr,
    qk_scale, stride_qb, stride_qh, stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh, stride_bt,
    stride_ob, stride_oh, stride_mo_b, stride_mo_h, stride_mo_s, stride_ml_b, stride_ml_h, num_splits,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, PAGE: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr, DIRECT: tl.constexpr, PIN_K: tl.constexpr, PIN_V: tl.constexpr, Q_FP8: tl.constexpr,
    ORDERED: tl.constexpr, PDL: tl.constexpr,
):
    pdl_enter(PDL)
    b = program_row(order_ptr, ORDERED)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    start, end = split_range(context_lens_ptr, b, split, num_splits, BLOCK_N)
    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    heads = kvh * GROUP + offs_g
    mask_g = offs_g < GROUP
    mask_d = offs_d < HEAD_DIM
    q = tl.load(q_ptr + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :],
                mask=mask_g[:, None] & mask_d[None, :], other=0.0)
    if Q_FP8:
        q_amax = tl.maximum(tl.max(tl.abs(q.to(tl.float32)), axis=1), 1e-12)
        q_scale = q_amax / 448.0
        q_t = tl.trans((q.to(tl.float32) / q_scale[:, None]).to(tl.float8e4nv))
        score_scale = q_scale * qk_scale
    else:
        q_t = tl.trans(q.to(tl.float16))  # [D, G]
        score_scale = tl.full([BLOCK_G], 1.0, tl.float32) * qk_scale
    m_i = tl.full([BLOCK_G], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_G], dtype=tl.float32)
    acc_t = tl.zeros([BLOCK_D, BLOCK_G], dtype=tl.float32)
    bt_row = block_tables_ptr + b.to(tl.int64) * stride_bt
    for start_n in range(start, end, BLOCK_N):
        pos = start_n + offs_n
        mask_n = pos < end
        phys = tl.load(bt_row + pos // PAGE, mask=mask_n, other=0).to(tl.int64)
        slot_in_page = pos % PAGE
        kv_mask = mask_n[:, None] & mask_d[None, :]
        k = tl.load(k_cache_ptr + phys[:, None] * stride_kb + slot_in_page[:, None] * stride_ks
                    + kvh * stride_kh + offs_d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(v_cache_ptr + phys[:, None] * stride_vb + slot_in_page[:, None] * stride_vs
                    + kvh * stride_vh + offs_d[None, :], mask=kv_mask, other=0.0)
        if Q_FP8:
            s_t = tl.dot(k, q_t)
        else:
            s_t = tl.dot(e4m3_to_f16(k, PIN_K), q_t)  # [N, G]
        s_t = s_t * score_scale[None, :]
        s_t = tl.where(mask_n[:, None], s_t, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s_t, axis=0))
        alpha = tl.exp2(m_i - m_new)
        p_t = tl.exp2(s_t - m_new[None, :])
        l_i = l_i * alpha + tl.sum(p_t, axis=0)
        m_i = m_new
        v16 = e4m3_to_f16(v, PIN_V)
        acc_t = acc_t * alpha[None, :] + tl.dot(tl.trans(v16), p_t.to(tl.float16))
    acc = tl.trans(acc_t)
    store_split(acc, l_i, m_i, b, split, heads, offs_d, mask_g, mask_d, out_ptr, stride_ob, stride_oh, mid_o_ptr,
                stride_mo_b, stride_mo_h, stride_mo_s, mid_lse_ptr, stride_ml_b, stride_ml_h, DIRECT)


def swapped_decode_attention(q, k_cache, v_cache, block_tables, context_lens, scale, tile=(64, 4, 4), q_fp8=True,
                             min_g=8, pin_k=True, out=None, order=None):
    """paged_decode_attention's contract over a float8 e4m3 cache, computed transposed (this file's kernel);
    tile = (BLOCK_N, warps, stages)."""
    B, Hq, D = q.shape
    _, page, Hkv, _ = k_cache.shape
    out = torch.empty_like(q) if out is None else out
    num_splits = choose_num_splits(B, Hkv, block_tables.shape[1] * page, q.device)
    group = Hq // Hkv
    block_n, warps, stages = tile
    direct = num_splits == 1
    mid_o, mid_lse, mo_strides, ml_strides = split_scratch(out, context_lens, num_splits)
    order_ptr, ordered = program_order(order, context_lens, direct)
    _decode_split_kernel_t[(B, Hkv, num_splits)](
        q, k_cache, v_cache, block_tables, context_lens, out, mid_o, mid_lse, order_ptr, float(scale) * _LOG2E,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), v_cache.stride(0),
        v_cache.stride(1), v_cache.stride(2), block_tables.stride(0), out.stride(0), out.stride(1), *mo_strides,
        *ml_strides, num_splits, GROUP=group, HEAD_DIM=D, PAGE=page, BLOCK_G=max(min_g, triton.next_power_of_2(group)),
        BLOCK_D=triton.next_power_of_2(D), BLOCK_N=block_n, DIRECT=direct, PIN_K=pin_k, PIN_V=True, Q_FP8=q_fp8,
        ORDERED=ordered, num_warps=warps, num_stages=stages, **pdl_args(q.device))
    if not direct:
        reduce_splits(mid_o, mid_lse, out, num_splits, triton.next_power_of_2(D))
    return out
