"""MLA decode attention in latent space (DeepSeek absorbed form) over a paged latent cache, as split-KV flash
decoding."""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .decode_attention import (choose_num_splits, gather_context, program_order, program_row, reduce_splits,
                               split_range, split_scratch, store_split)
from .fp8_widen import pinned, register_move
from .online_softmax import online_softmax_weights
from .pdl import pdl_args, pdl_enter

_LOG2E = 1.4426950408889634


# As in decode_attention: per-step arguments are not specialised on, so no variant compiles mid-run.
@triton.jit(do_not_specialize=["stride_bt", "stride_ml_b", "stride_ml_h", "num_splits"])
def _mla_decode_split_kernel(
    q_ptr,  # q_latent [B, H, L]
    qpe_ptr,  # q_pe [B, H, R]
    cache_ptr,  # [num_blocks, PAGE, 1, L + R] contiguous: c_kv ++ k_pe
    block_tables_ptr,
    context_lens_ptr,
    out_ptr,
    mid_o_ptr,
    mid_lse_ptr,
    order_ptr,  # ORDERED: the sequence each program row takes (longest context first)
    qk_scale,  # softmax scale * log2(e)
    stride_qb,
    stride_qh,
    stride_pb,
    stride_ph,
    stride_bt,
    stride_ob,
    stride_oh,
    stride_mo_b,
    stride_mo_h,
    stride_mo_s,
    stride_ml_b,
    stride_ml_h,
    num_splits,  # KV chunks per sequence
    NUM_HEADS: tl.constexpr,
    LATENT: tl.constexpr,  # L = kv_lora_rank
    ROPE: tl.constexpr,  # R = qk_rope_head_dim
    PAGE: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_N: tl.constexpr,
    DIRECT: tl.constexpr,  # num_splits == 1: write the final output, skip the reduction
    PIN_LATENT: tl.constexpr,  # a float8 cache on CUDA: c_kv widened where loaded (see FP8_PIN_LATENT)
    SEPARATE_CHAINS: tl.constexpr,  # on CUDA: the score dots kept apart (_chain_end)
    F16_DOTS: tl.constexpr,  # bf16 queries over a float8 cache: the dots in fp16 (see FP8_DOTS_IN_F16)
    ORDERED: tl.constexpr,
    PDL: tl.constexpr,
):
    pdl_enter(PDL)
    b = program_row(order_ptr, ORDERED)
    hb = tl.program_id(1)
    split = tl.program_id(2)

    start, end = split_range(context_lens_ptr, b, split, num_splits, BLOCK_N)

    heads = hb * BLOCK_H + tl.arange(0, BLOCK_H)
    # The latent dimension in two halves, each its own dot and accumulator: one dot over all of L is a chain of
    # dependent mma.sync (36 at DeepSeek's 512 + 64 with 4 warps, each warp's 16 x 8 score tile accumulating over
    # K), the loop's critical path (ncu: 'wait' the top stall); two halves and the rope part are three chains the
    # scheduler interleaves.
    HALF: tl.constexpr = BLOCK_L // 2
    offs_half = tl.arange(0, HALF)
    offs_r = tl.arange(0, BLOCK_R)
    offs_n = tl.arange(0, BLOCK_N)
    mask_h = heads < NUM_HEADS
    mask_lo = offs_half < LATENT
    mask_hi = HALF + offs_half < LATENT
    mask_r = offs_r < ROPE

    # BLOCK_H heads share the single latent KV head: each cache tile is read once for all of them.
    q_rows = q_ptr + b * stride_qb + heads[:, None] * stride_qh
    q_lo = tl.load(q_rows + offs_half[None, :], mask=mask_h[:, None] & mask_lo[None, :], other=0.0)
    q_hi = tl.load(q_rows + HALF + offs_half[None, :], mask=mask_h[:, None] & mask_hi[None, :], other=0.0)
    q_pe = tl.load(qpe_ptr + b * stride_pb + heads[:, None] * stride_ph + offs_r[None, :],
                   mask=mask_h[:, None] & mask_r[None, :], other=0.0)
    score_scale = qk_scale
    if F16_DOTS:
        # Scaled (in fp32: one rounding, to fp16) before narrowing: the dots give scores in log2 units, and fp16's
        # range holds q_latent with a further factor of ~10 (1 / qk_scale) to spare.
        q_lo = (q_lo.to(tl.float32) * qk_scale).to(tl.float16)
        q_hi = (q_hi.to(tl.float32) * qk_scale).to(tl.float16)
        q_pe = (q_pe.to(tl.float32) * qk_scale).to(tl.float16)
        score_scale = 1.0

    m_i = tl.full([BLOCK_H], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
    acc_lo = tl.zeros([BLOCK_H, HALF], dtype=tl.float32)
    acc_hi = tl.zeros([BLOCK_H, HALF], dtype=tl.float32)

    bt_row = block_tables_ptr + b.to(tl.int64) * stride_bt
    for start_n in range(start, end, BLOCK_N):
        pos = start_n + offs_n
        mask_n = pos < end
        phys = tl.load(bt_row + pos // PAGE, mask=mask_n, other=0).to(tl.int64)
        # [BLOCK_N] token rows. Offsets from compile-time sizes, not runtime strides: 10% fewer instructions a tile
        # (SASS loop body 552 -> 499 at DeepSeek's sizes, the integer multiplies 83 -> 45).
        row = cache_ptr + (phys * PAGE + pos % PAGE) * (LATENT + ROPE)
        c_lo = _latent_part(row, offs_half, mask_n, mask_lo, q_lo.dtype, PIN_LATENT)
        c_hi = _latent_part(row + HALF, offs_half, mask_n, mask_hi, q_lo.dtype, PIN_LATENT)
        k_pe = tl.load(row[:, None] + LATENT + offs_r[None, :], mask=mask_n[:, None] & mask_r[None, :],
                       other=0.0).to(q_lo.dtype)
        qk = (_chain_end(tl.dot(q_lo, tl.trans(c_lo), input_precision="ieee"), SEPARATE_CHAINS)
              + _chain_end(tl.dot(q_hi, tl.trans(c_hi), input_precision="ieee"), SEPARATE_CHAINS)
              + _chain_end(tl.dot(q_pe, tl.trans(k_pe), input_precision="ieee"), SEPARATE_CHAINS)) * score_scale
        qk = tl.where(mask_n[None, :], qk, float("-inf"))
        m_i, l_i, alpha, p = online_softmax_weights(qk, m_i, l_i)
        p = p.to(c_lo.dtype)
        acc_lo = acc_lo * alpha[:, None] + tl.dot(p, c_lo, input_precision="ieee")
        acc_hi = acc_hi * alpha[:, None] + tl.dot(p, c_hi, input_precision="ieee")

    store_split(acc_lo, l_i, m_i, b, split, heads, offs_half, mask_h, mask_lo, out_ptr, stride_ob, stride_oh,
                mid_o_ptr, stride_mo_b, stride_mo_h, stride_mo_s, mid_lse_ptr, stride_ml_b, stride_ml_h, DIRECT)
    store_split(acc_hi, l_i, m_i, b, split, heads, HALF + offs_half, mask_h, mask_hi, out_ptr, stride_ob, stride_oh,
                mid_o_ptr, stride_mo_b, stride_mo_h, stride_mo_s, mid_lse_ptr, stride_ml_b, stride_ml_h, DIRECT)


@triton.jit
def _chain_end(x, SEPARATE: tl.constexpr):
    """x (fp32), on CUDA through a register move: Triton folds dot(a, b) + c into dot(a, b, c), which would chain the
    parts' dots back into one (the interpreter has no inline PTX: a no-op there)."""
    if SEPARATE:
        x = register_move(x, True)
    return x


@triton.jit
def _latent_part(row, offs, mask_n, mask, dtype, PIN: tl.constexpr):
    """One part of the tile's c_kv [BLOCK_N, len(offs)] from the token rows, widened to dtype (a float8 cache; a
    no-op otherwise) and, PIN, pinned where widened (see FP8_PIN_LATENT)."""
    c = tl.load(row[:, None] + offs[None, :], mask=mask_n[:, None] & mask[None, :], other=0.0).to(dtype)
    if PIN:
        c = pinned(c)
    return c


# (BLOCK_H, BLOCK_N, num_warps, num_stages) on CUDA, BLOCK_N for L <= 256 / larger L; BLOCK_N is not tied to
# the block size. From tests/gpu/tune_mla_decode.py on an H200 (DeepSeek-V2-Lite shapes, bs1-512, in CUDA
# graphs): 0.755x the time of the first defaults (16, (32, 16), 4, 2), e.g. bs256 @1k 147 -> 121 us a layer; with
# the latent halves (session 14) 104 us (70% of the copy rate) at (16, (32, 32), 4, 2). With the cache offsets
# from compile-time sizes (session 15) that tile lost at bs256 (116 us; 40 / 53 / 11 at bs64 / bs32 / bs1) and
# 64-token tiles won over the shapes (0.95x the time): 105 / 41 / 49 / 10 us.
CUDA_CONFIG = (16, (32, 64), 4, 2)
# Over a float8 latent cache (cache.dtype=fp8) a wider, unpipelined tile. tune_mla_decode.py --fp8 on an H200
# (session 15, the latent halves, the dots in fp16: FP8_DOTS_IN_F16) put (16, (32, 64), 4, 1) first over the
# shapes, 0.95x the time of session 14's 8-warp choice: bs256 @1k 114 us, bs64 37, bs32 over 200..4k 51, bs1 9.
# Faster than the bf16 cache at bs64 and bs1, slower at bs256 (bf16 105 us): at 16 heads a token's latent
# feeds only a 16-row mma.sync, so the kernel is bound by its dots and the widening more than by the bytes it
# reads; a float8 latent cache buys capacity (twice the tokens) more than speed.
CUDA_CONFIG_FP8 = (16, (32, 64), 4, 1)
# Over a float8 latent cache c_kv is both dots' operand, the P c_kv one transposed: left to itself Triton rearranges
# the float8 bytes for it (ptx_census.py mla --cache fp8: 128 ld.shared.b8 a tile, 255 registers and a 12-byte
# spill); pinned where widened (fp8_widen.pinned), the bf16 values go through shared memory instead (no byte loads,
# 245 registers, no spill, 70 KB of shared memory against 53). Timed (tune_mla_decode.py --fp8, H200): faster at
# every tile and shape, e.g. bs256 @1k 154 vs 170 us, bs64 47 vs 51. SPMD_MLA_FP8_PIN=0 turns it off.
FP8_PIN_LATENT = os.environ.get("SPMD_MLA_FP8_PIN", "1") != "0"
# bf16 queries over a float8 latent cache: the dots in fp16, as decode attention's (decode_settings.FP8_DOTS_IN_F16),
# so c_kv widens by one cvt.e4m3x2 a pair of values; to bf16 each value took a second conversion (ncu, bs256:
# F2F.BF16.F16 17.5% of the instructions and 19% of the stall samples). The queries are scaled by the softmax
# scale before they are narrowed (fp16's range is smaller than bf16's); the weights P (<= 1) and the fp32
# accumulators lose nothing, and fp16 keeps 3 more mantissa bits than bf16. Offline (ptx_census.py mla --cache fp8
# --f16-dots 1 --sass F) the main loop goes from 734 to 511 instructions a trip (no F2F, no PRMT). Timed
# (run_mla_f16_dots.sh, H200, session 15, interleaved on / off at the 8-warp tile): bs256 @1k 119 vs 122-123 us,
# bs32 over 200..4k 54 vs 56, bs1 10 vs 11, bs64 38 both; with its own tile (CUDA_CONFIG_FP8) 114 / 37 / 51 / 9.
# SPMD_MLA_FP8_F16_DOTS=0 turns it off.
FP8_DOTS_IN_F16 = os.environ.get("SPMD_MLA_FP8_F16_DOTS", "1") != "0"


def _launch_config(block_l: int, fp8_cache: bool, device: torch.device):
    if device.type != "cuda":  # TRITON_INTERPRET: the smallest tiles tl.dot accepts
        return 16, 16, 4, 1
    block_h, (n_small, n_large), warps, stages = CUDA_CONFIG_FP8 if fp8_cache else CUDA_CONFIG
    return block_h, n_small if block_l <= 256 else n_large, warps, stages


def mla_decode(
    q_latent: torch.Tensor,
    q_pe: torch.Tensor,
    kv_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
    num_splits: int | None = None,
    max_context_len: int | None = None,
    out: torch.Tensor | None = None,
    order: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(scale * (q_latent c_kv^T + q_pe k_pe^T)) c_kv over each sequence's paged latent cache.

    q_latent [B, H, L] (q_nope already multiplied by W_UK); q_pe [B, H, R] (roped); kv_cache
    [num_blocks, block_size, 1, L + R] holding c_kv ++ k_pe per token, in q_latent's dtype or float8 e4m3
    (widened as read); block_tables int32
    [B, max_blocks]; context_lens int32 [B], >= 1. Returns out_latent [B, H, L] in q_latent.dtype
    (multiply by W_UV afterwards). num_splits / max_context_len as in paged_decode_attention:
    with both None there is no device sync (CUDA-graph safe). Writes into ``out`` when given. order: int32 [B], the
    order in which a launch of one split starts the rows' programs, as in paged_decode_attention (longest context
    first, decode_settings.LONGEST_FIRST: no measurable effect for MLA on an H200).
    """
    B, H, L = q_latent.shape
    R = q_pe.shape[2]
    _, page, one, LR = kv_cache.shape
    assert q_pe.shape[:2] == (B, H) and one == 1 and LR == L + R, "kv_cache must be [blocks, page, 1, L + R]"
    assert q_latent.stride(-1) == 1 and q_pe.stride(-1) == 1 and kv_cache.is_contiguous()
    assert page & (page - 1) == 0, "block_size must be a power of two"
    if out is None:
        out = torch.empty_like(q_latent)
    if B == 0:
        return out
    if block_tables.stride(-1) != 1:
        block_tables = block_tables.contiguous()
    BLOCK_L = max(triton.next_power_of_2(L), 32)  # two halves, each a tl.dot dimension: >= 16 on CUDA
    BLOCK_R = max(triton.next_power_of_2(R), 16)
    fp8_cache = kv_cache.dtype == torch.float8_e4m3fn
    BLOCK_H, BLOCK_N, num_warps, num_stages = _launch_config(BLOCK_L, fp8_cache, q_latent.device)
    head_blocks = triton.cdiv(H, BLOCK_H)
    if num_splits is None:
        if max_context_len is None:
            max_context_len = block_tables.shape[1] * page
        # Programs are batch x head blocks here (all heads share the one latent KV head).
        num_splits = choose_num_splits(B, head_blocks, max_context_len, q_latent.device)
    num_splits = max(int(num_splits), 1)
    direct = num_splits == 1
    mid_o, mid_lse, mo_strides, ml_strides = split_scratch(out, context_lens, num_splits)
    order_ptr, ordered = program_order(order, context_lens, direct)
    _mla_decode_split_kernel[(B, head_blocks, num_splits)](
        q_latent, q_pe, kv_cache, block_tables, context_lens, out, mid_o, mid_lse, order_ptr, float(scale) * _LOG2E,
        q_latent.stride(0), q_latent.stride(1), q_pe.stride(0), q_pe.stride(1),
        block_tables.stride(0),
        out.stride(0), out.stride(1), *mo_strides, *ml_strides, num_splits,
        NUM_HEADS=H, LATENT=L, ROPE=R, PAGE=page,
        BLOCK_H=BLOCK_H, BLOCK_L=BLOCK_L, BLOCK_R=BLOCK_R, BLOCK_N=BLOCK_N, DIRECT=direct,
        PIN_LATENT=FP8_PIN_LATENT and fp8_cache and kv_cache.is_cuda,
        SEPARATE_CHAINS=kv_cache.is_cuda, ORDERED=ordered,
        F16_DOTS=FP8_DOTS_IN_F16 and fp8_cache and q_latent.dtype == torch.bfloat16,
        num_warps=num_warps, num_stages=num_stages,
        **pdl_args(q_latent.device),
    )
    if not direct:
        reduce_splits(mid_o, mid_lse, out, num_splits, BLOCK_L)
    return out


def mla_decode_ref(
    q_latent: torch.Tensor,
    q_pe: torch.Tensor,
    kv_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
    num_splits: int | None = None,
    max_context_len: int | None = None,
) -> torch.Tensor:
    """Plain-PyTorch reference for :func:`mla_decode` (fp32 math, q_latent.dtype out)."""
    B, H, L = q_latent.shape
    out = torch.empty_like(q_latent)
    for b in range(B):
        ctx = gather_context(kv_cache, block_tables[b], int(context_lens[b]))[:, 0].float()  # [n, L + R]
        c_kv, k_pe = ctx[:, :L], ctx[:, L:]
        scores = (q_latent[b].float() @ c_kv.t() + q_pe[b].float() @ k_pe.t()) * scale
        out[b] = (scores.softmax(dim=-1) @ c_kv).to(q_latent.dtype)
    return out
