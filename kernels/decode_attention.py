"""Paged decode attention (one query token per sequence, GQA) as split-KV flash decoding."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import decode_settings as settings
from .fp8_widen import e4m3_to_f16
from .online_softmax import online_softmax_step
from .pdl import pdl_args, pdl_enter

_LOG2E = 1.4426950408889634


@triton.jit
def split_range(context_lens_ptr, b, split, num_splits, BLOCK_N: tl.constexpr):
    """[start, end) of sequence b's KV chunk number split: whole BLOCK_N tiles, the last chunk partial or empty."""
    ctx = tl.load(context_lens_ptr + b)
    chunk = tl.cdiv(tl.cdiv(ctx, num_splits), BLOCK_N) * BLOCK_N
    start = split * chunk
    return start, tl.minimum(start + chunk, ctx)


@triton.jit
def program_row(order_ptr, ORDERED: tl.constexpr):
    """The batch row this program attends for: ORDERED, the order's entry for its grid row (program_order), else the
    grid row itself."""
    if ORDERED:
        b = tl.load(order_ptr + tl.program_id(0))
    else:
        b = tl.program_id(0)
    return b


def program_order(order: torch.Tensor | None, context_lens: torch.Tensor, direct: bool) -> tuple[torch.Tensor, bool]:
    """(order_ptr, ORDERED) for a split kernel's launch: a launch of one split (direct) starts its rows' programs in
    `order` when given and decode_settings.LONGEST_FIRST is on; otherwise the pointer is a placeholder, unread."""
    return (order if order is not None else context_lens), order is not None and direct and settings.LONGEST_FIRST


@triton.jit
def store_split(acc, l_i, m_i, b, split, heads, offs_d, mask_heads, mask_d, out_ptr, stride_ob, stride_oh,
                mid_o_ptr, stride_mo_b, stride_mo_h, stride_mo_s, mid_lse_ptr, stride_ml_b, stride_ml_h,
                DIRECT: tl.constexpr):
    """A split's normalised output: the final one when DIRECT (a single split), else into the scratch with its
    log2-sum-exp for _decode_reduce_kernel (-inf for an empty split)."""
    has = l_i > 0.0
    o = acc / tl.where(has, l_i, 1.0)[:, None]
    out_mask = mask_heads[:, None] & mask_d[None, :]
    if DIRECT:
        tl.store(out_ptr + b * stride_ob + heads[:, None] * stride_oh + offs_d[None, :],
                 o.to(out_ptr.dtype.element_ty), mask=out_mask)
    else:
        tl.store(mid_o_ptr + b * stride_mo_b + heads[:, None] * stride_mo_h + split * stride_mo_s + offs_d[None, :],
                 o, mask=out_mask)
        lse = tl.where(has, m_i + tl.log2(tl.where(has, l_i, 1.0)), float("-inf"))
        tl.store(mid_lse_ptr + b * stride_ml_b + heads * stride_ml_h + split, lse, mask=mask_heads)


@triton.jit
def v_by_warp(v, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, WARPS: tl.constexpr):
    """V [BLOCK_N, BLOCK_D] with its columns reordered so that the P V dot's fragments read whole words of the cache.

    mma.sync's B operand holds, per thread, adjacent tokens of one column of each 8-column tile, and Triton deals a
    16-row dot's 8-column tiles to its WARPS warps in turn. In the cache's order a thread's columns lie 8 * WARPS
    apart, so a float8 V reaches the dot a byte per load, or widened and copied to shared memory as fp16 for
    ldmatrix.trans (decode_settings.FP8_PIN_V). Reordered, a thread's columns are BLOCK_D / (8 * WARPS) adjacent bytes
    of each token's row: word loads, then byte permutes in registers pair the tokens. Attention is the same under any
    order of V's columns, so only the output has to be put back (columns_by_dimension)."""
    # column 8 * (WARPS * j + w) + g (tile j of warp w, lane group g) <- dimension (w * 8 + g) * TILES + j
    v = tl.reshape(v, [BLOCK_N, WARPS, 8, BLOCK_D // (8 * WARPS)])
    return tl.reshape(tl.permute(v, [0, 3, 1, 2]), [BLOCK_N, BLOCK_D])


@triton.jit
def columns_by_dimension(acc, ROWS: tl.constexpr, BLOCK_D: tl.constexpr, WARPS: tl.constexpr):
    """The P V dot's output over v_by_warp's columns, back in head-dimension order."""
    acc = tl.reshape(acc, [ROWS, BLOCK_D // (8 * WARPS), WARPS, 8])
    return tl.reshape(tl.permute(acc, [0, 2, 3, 1]), [ROWS, BLOCK_D])


# Arguments that change from step to step (block-table width, split count and the scratch strides that
# follow it) are not specialised on (==1, %16): each new value would otherwise compile another variant
# in the middle of a run, after warmup.
@triton.jit(do_not_specialize=["stride_bt", "stride_ml_b", "stride_ml_h", "num_splits"])
def _decode_split_kernel(
    q_ptr,
    k_cache_ptr,
    v_cache_ptr,
    block_tables_ptr,
    context_lens_ptr,
    out_ptr,
    mid_o_ptr,
    mid_lse_ptr,
    order_ptr,  # ORDERED: the sequence each program row takes (longest context first)
    qk_scale,  # softmax scale * log2(e)
    stride_qb,
    stride_qh,
    stride_kb,
    stride_ks,
    stride_kh,
    stride_vb,
    stride_vs,
    stride_vh,
    stride_bt,
    stride_ob,
    stride_oh,
    stride_mo_b,
    stride_mo_h,
    stride_mo_s,
    stride_ml_b,
    stride_ml_h,
    num_splits,  # KV chunks per sequence
    GROUP: tl.constexpr,  # query heads per KV head
    HEAD_DIM: tl.constexpr,
    PAGE: tl.constexpr,  # KV-cache block size
    BLOCK_G: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    DIRECT: tl.constexpr,  # num_splits == 1: write the final output, skip the reduction
    F16_DOTS: tl.constexpr,  # bf16 queries over a float8 cache: both dots in fp16 (decode_settings)
    ASM_WIDEN: tl.constexpr,  # F16_DOTS over e4m3 on CUDA: K and V widened by e4m3_to_f16 (decode_settings)
    PIN_V: tl.constexpr,  # ASM_WIDEN: V widened as loaded, laid out for the P V dot in fp16 (decode_settings)
    V_BY_WARP: tl.constexpr,  # 0, or the launch's warps: V's columns dealt to the P V dot's warps (v_by_warp)
    ORDERED: tl.constexpr,
    PDL: tl.constexpr,
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

    # All query heads sharing this KV head: every K/V tile is read once for the whole group.
    q = tl.load(
        q_ptr + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :],
        mask=mask_g[:, None] & mask_d[None, :],
        other=0.0,
    )
    if F16_DOTS:
        q = q.to(tl.float16)

    m_i = tl.full([BLOCK_G], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_G], dtype=tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], dtype=tl.float32)

    bt_row = block_tables_ptr + b.to(tl.int64) * stride_bt
    for start_n in range(start, end, BLOCK_N):
        pos = start_n + offs_n
        mask_n = pos < end
        # A tile of BLOCK_N tokens spans BLOCK_N // PAGE whole cache blocks (or part of one).
        phys = tl.load(bt_row + pos // PAGE, mask=mask_n, other=0).to(tl.int64)
        slot_in_page = pos % PAGE
        kv_mask = mask_n[:, None] & mask_d[None, :]
        k = tl.load(
            k_cache_ptr + phys[:, None] * stride_kb + slot_in_page[:, None] * stride_ks
            + kvh * stride_kh + offs_d[None, :],
            mask=kv_mask,
            other=0.0,
        )
        v = tl.load(
            v_cache_ptr + phys[:, None] * stride_vb + slot_in_page[:, None] * stride_vs
            + kvh * stride_vh + offs_d[None, :],
            mask=kv_mask,
            other=0.0,
        )
        if ASM_WIDEN:
            k = e4m3_to_f16(k)
            v = e4m3_to_f16(v, PIN_V and V_BY_WARP == 0)
        else:  # a float8 cache is widened to q's dtype for the dots (a no-op otherwise)
            k = k.to(q.dtype)
            v = v.to(q.dtype)
        if V_BY_WARP:
            v = v_by_warp(v, BLOCK_N, BLOCK_D, V_BY_WARP)
        qk = tl.dot(q, tl.trans(k), input_precision="ieee") * qk_scale  # [BLOCK_G, BLOCK_N]
        qk = tl.where(mask_n[None, :], qk, float("-inf"))
        m_i, l_i, acc = online_softmax_step(qk, v, m_i, l_i, acc)

    if V_BY_WARP:
        acc = columns_by_dimension(acc, BLOCK_G, BLOCK_D, V_BY_WARP)
    store_split(acc, l_i, m_i, b, split, heads, offs_d, mask_g, mask_d, out_ptr, stride_ob, stride_oh, mid_o_ptr,
                stride_mo_b, stride_mo_h, stride_mo_s, mid_lse_ptr, stride_ml_b, stride_ml_h, DIRECT)


@triton.jit(do_not_specialize=["stride_ml_b", "stride_ml_h", "num_splits"])
def _decode_reduce_kernel(
    mid_o_ptr,
    mid_lse_ptr,
    out_ptr,
    stride_mo_b,
    stride_mo_h,
    stride_mo_s,
    stride_ml_b,
    stride_ml_h,
    stride_ob,
    stride_oh,
    num_splits,
    HEAD_DIM: tl.constexpr,
    BLOCK_S: tl.constexpr,  # num_splits rounded up to a power of two
    BLOCK_D: tl.constexpr,
    PDL: tl.constexpr,
):
    pdl_enter(PDL)
    b = tl.program_id(0)
    h = tl.program_id(1)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    mask_s = offs_s < num_splits
    mask_d = offs_d < HEAD_DIM
    lse = tl.load(mid_lse_ptr + b * stride_ml_b + h * stride_ml_h + offs_s, mask=mask_s, other=float("-inf"))
    m = tl.max(lse, axis=0)  # finite: the first split of a non-empty context is never empty
    w = tl.exp2(lse - m)
    o = tl.load(
        mid_o_ptr + b * stride_mo_b + h * stride_mo_h + offs_s[:, None] * stride_mo_s + offs_d[None, :],
        mask=mask_s[:, None] & mask_d[None, :],
        other=0.0,
    )
    out = tl.sum(o * w[:, None], axis=0) / tl.sum(w, axis=0)
    tl.store(out_ptr + b * stride_ob + h * stride_oh + offs_d, out.to(out_ptr.dtype.element_ty), mask=mask_d)


def _launch_config(block_d: int, page: int, elem_size: int, cache_elem_size: int, num_splits: int,
                   device: torch.device):
    if device.type != "cuda":  # TRITON_INTERPRET: small tiles keep the interpreter quick
        return max(page, 16), 4, 1
    block_n, warps, stages = settings.CUDA_CONFIG
    if cache_elem_size == 1:  # by split count, the last tile listed for any more
        tiles = settings.FP8_SPLIT_CONFIGS
        block_n, warps, stages = tiles[min(num_splits, len(tiles)) - 1]
    if block_d > 128:
        block_n = min(block_n, 32)
    if elem_size >= 4:  # fp32: keep shared memory in bounds
        stages = min(stages, 2)
    return max(block_n, page), warps, stages


def _asm_widen(cache: torch.Tensor, num_warps: int) -> bool:
    """Whether a float8 launch widens with e4m3_to_f16: an e4m3 cache on a GPU with cvt.e4m3x2 (sm_89 and later),
    for the tiles decode_settings.FP8_ASM_WIDEN names."""
    if settings.FP8_ASM_WIDEN is None or cache.dtype != torch.float8_e4m3fn or not cache.is_cuda:
        return False
    if torch.cuda.get_device_capability(cache.device) < (8, 9):
        return False
    return num_warps >= settings.FP8_ASM_WIDEN


def _v_by_warp(cache: torch.Tensor, block_d: int, num_warps: int) -> int:
    """The split kernel's V_BY_WARP: num_warps for a float8 cache under decode_settings.FP8_V_BY_WARP where the head
    dimension splits into 8-column tiles for every warp, else 0."""
    if not settings.FP8_V_BY_WARP or cache.element_size() != 1 or block_d % (8 * num_warps):
        return 0
    return num_warps


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1


def choose_num_splits(batch: int, num_kv_heads: int, max_context_len: int, device: torch.device) -> int:
    """Enough splits that batch * kv_heads * splits programs fill the GPU SPLIT_WAVES times, but no fewer than
    MIN_SPLIT_TOKENS tokens per split (SHORT_SPLIT_TOKENS where that many would not give each SM a program), and at
    most 32 splits (decode_settings)."""
    programs = max(batch * num_kv_heads, 1)
    sms = _num_sms(device)
    want = triton.cdiv(settings.SPLIT_WAVES * sms, programs)
    tokens = max(max_context_len, 1)
    by_len = triton.cdiv(tokens, settings.MIN_SPLIT_TOKENS)
    if programs * by_len < sms:
        by_len = triton.cdiv(tokens, settings.SHORT_SPLIT_TOKENS)
    return int(max(1, min(want, by_len, 32)))


def paged_decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
    num_splits: int | None = None,
    max_context_len: int | None = None,
    out: torch.Tensor | None = None,
    order: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(q k^T * scale) v over each sequence's paged context; returns out [B, Hq, D].

    q [B, Hq, D] (one token per sequence); k_cache, v_cache [num_blocks, block_size, Hkv, D]
    with Hq % Hkv == 0 (GQA); block_tables int32 [B, max_blocks]; context_lens int32 [B], >= 1.
    num_splits: KV chunks per sequence (split-KV); None picks one from B, Hkv and
    max_context_len (an upper bound on context_lens; defaults to max_blocks * block_size, so no
    device sync is needed). Writes into ``out`` when given. order: int32 [B], a permutation of the batch rows, the
    order in which a launch of one split starts their programs (see decode_settings.LONGEST_FIRST); launches of more
    splits ignore it.
    """
    B, Hq, D = q.shape
    _, page, Hkv, Dk = k_cache.shape
    assert Dk == D and v_cache.shape == k_cache.shape and Hq % Hkv == 0
    assert q.stride(-1) == 1 and k_cache.stride(-1) == 1 and v_cache.stride(-1) == 1
    assert page & (page - 1) == 0, "block_size must be a power of two"
    if out is None:
        out = torch.empty_like(q)
    if B == 0:
        return out
    if block_tables.stride(-1) != 1:
        block_tables = block_tables.contiguous()
    if num_splits is None:
        if max_context_len is None:
            max_context_len = block_tables.shape[1] * page
        num_splits = choose_num_splits(B, Hkv, max_context_len, q.device)
    num_splits = max(int(num_splits), 1)
    group = Hq // Hkv
    BLOCK_D = max(triton.next_power_of_2(D), 16)  # tl.dot's K >= 16 on CUDA (the interpreter takes any): head_dim 8
    BLOCK_G = max(triton.next_power_of_2(group), 16)  # tl.dot needs >= 16 rows
    BLOCK_N, num_warps, num_stages = _launch_config(BLOCK_D, page, q.element_size(), k_cache.element_size(),
                                                    num_splits, q.device)
    direct = num_splits == 1
    f16_dots = settings.FP8_DOTS_IN_F16 and q.dtype == torch.bfloat16 and k_cache.element_size() == 1
    mid_o, mid_lse, mo_strides, ml_strides = split_scratch(out, context_lens, num_splits)
    order_ptr, ordered = program_order(order, context_lens, direct)
    _decode_split_kernel[(B, Hkv, num_splits)](
        q,
        k_cache,
        v_cache,
        block_tables,
        context_lens,
        out,
        mid_o,
        mid_lse,
        order_ptr,
        float(scale) * _LOG2E,
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        v_cache.stride(0),
        v_cache.stride(1),
        v_cache.stride(2),
        block_tables.stride(0),
        out.stride(0),
        out.stride(1),
        *mo_strides,
        *ml_strides,
        num_splits,
        GROUP=group,
        HEAD_DIM=D,
        PAGE=page,
        BLOCK_G=BLOCK_G,
        BLOCK_D=BLOCK_D,
        BLOCK_N=BLOCK_N,
        DIRECT=direct,
        F16_DOTS=f16_dots,
        ASM_WIDEN=f16_dots and _asm_widen(k_cache, num_warps),
        PIN_V=settings.FP8_PIN_V,
        V_BY_WARP=_v_by_warp(k_cache, BLOCK_D, num_warps),
        ORDERED=ordered,
        num_warps=num_warps,
        num_stages=num_stages,
        **pdl_args(q.device),
    )
    if not direct:
        reduce_splits(mid_o, mid_lse, out, num_splits, BLOCK_D)
    return out


def split_scratch(out: torch.Tensor, context_lens: torch.Tensor, num_splits: int):
    """(per-split outputs [B, H, splits, D] fp32, their log2-sum-exp [B, H, splits], the two's strides) for a split
    kernel writing out [B, H, D]; with one split the kernel writes out directly and these are placeholders."""
    if num_splits == 1:
        return out, context_lens, (0, 0, 0), (0, 0)  # unread: DIRECT
    B, H, D = out.shape
    mid_o = torch.empty((B, H, num_splits, D), dtype=torch.float32, device=out.device)
    mid_lse = torch.empty((B, H, num_splits), dtype=torch.float32, device=out.device)
    return mid_o, mid_lse, mid_o.stride()[:3], mid_lse.stride()[:2]


def reduce_splits(mid_o: torch.Tensor, mid_lse: torch.Tensor, out: torch.Tensor, num_splits: int,
                  block_d: int) -> None:
    """out [B, H, D] = the splits' outputs weighted by their softmax mass (_decode_reduce_kernel)."""
    B, H, D = out.shape
    _decode_reduce_kernel[(B, H)](
        mid_o, mid_lse, out, *mid_o.stride()[:3], *mid_lse.stride()[:2], out.stride(0), out.stride(1), num_splits,
        HEAD_DIM=D, BLOCK_S=triton.next_power_of_2(num_splits), BLOCK_D=block_d, num_warps=4,
        **pdl_args(mid_o.device),
    )


def gather_context(
    cache: torch.Tensor, block_table: torch.Tensor, context_len: int
) -> torch.Tensor:
    """The first context_len tokens of one sequence from a paged cache -> [context_len, Hkv, D]."""
    page = cache.shape[1]
    num_blocks = (context_len + page - 1) // page
    blocks = block_table[:num_blocks].long()
    return cache[blocks].flatten(0, 1)[:context_len]


def paged_decode_attention_ref(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
    num_splits: int | None = None,
    max_context_len: int | None = None,
) -> torch.Tensor:
    """Plain-PyTorch reference for :func:`paged_decode_attention` (fp32 math, q.dtype out)."""
    B, Hq, D = q.shape
    Hkv = k_cache.shape[2]
    out = torch.empty_like(q)
    for b in range(B):
        n = int(context_lens[b])
        k = gather_context(k_cache, block_tables[b], n).float()  # [n, Hkv, D]
        v = gather_context(v_cache, block_tables[b], n).float()
        k = k.repeat_interleave(Hq // Hkv, dim=1)  # [n, Hq, D]
        v = v.repeat_interleave(Hq // Hkv, dim=1)
        scores = torch.einsum("hd,nhd->hn", q[b].float(), k) * scale
        probs = scores.softmax(dim=-1)
        out[b] = torch.einsum("hn,nhd->hd", probs, v).to(q.dtype)
    return out
