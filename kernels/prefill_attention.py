"""Causal flash attention for packed prefill queries over a paged KV cache (prefix caching, chunked prefill).

V may be narrower than Q/K (DeepSeek MLA expanded to per-head K and V: q/k 192 = 128 nope + 64 rope, v 128).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .decode_attention import gather_context
from .online_softmax import online_softmax_step
from .pdl import pdl_args, pdl_enter

_LOG2E = 1.4426950408889634


@triton.jit
def _attend_tile(
    q, q_pos, m_i, l_i, acc, start_n, kv_end, k_base, v_base, bt_row, qk_scale,
    stride_kb, stride_ks, stride_vb, stride_vs, offs_n, offs_d, mask_d, offs_dv, mask_dv,
    PAGE: tl.constexpr,
    MASKED: tl.constexpr,  # apply the causal and the kv_end masks (diagonal / last tiles)
):
    """One BLOCK_N tile of keys gathered through the block table, folded into the online softmax."""
    pos = start_n + offs_n
    mask_n = pos < kv_end
    if MASKED:
        phys = tl.load(bt_row + pos // PAGE, mask=mask_n, other=0).to(tl.int64)
        k_mask = mask_n[:, None] & mask_d[None, :]
        v_mask = mask_n[:, None] & mask_dv[None, :]
    else:
        phys = tl.load(bt_row + pos // PAGE).to(tl.int64)
        k_mask = mask_d[None, :]
        v_mask = mask_dv[None, :]
    k_off = phys * stride_kb + (pos % PAGE) * stride_ks
    v_off = phys * stride_vb + (pos % PAGE) * stride_vs
    # A float8 cache is widened to q's dtype for the dots (a no-op otherwise).
    k = tl.load(k_base + k_off[:, None] + offs_d[None, :], mask=k_mask, other=0.0).to(q.dtype)
    v = tl.load(v_base + v_off[:, None] + offs_dv[None, :], mask=v_mask, other=0.0).to(q.dtype)
    qk = tl.dot(q, tl.trans(k), input_precision="ieee") * qk_scale  # [BLOCK_M, BLOCK_N]
    if MASKED:
        causal = (pos[None, :] <= q_pos[:, None]) & mask_n[None, :]
        qk = tl.where(causal, qk, float("-inf"))
    # Every query sees key 0, which lies in the first tile, so the row max is finite from then on.
    return online_softmax_step(qk, v, m_i, l_i, acc)


# The block-table width changes from step to step: not specialised on, so no variant compiles mid-run.
@triton.jit(do_not_specialize=["stride_bt"])
def _prefill_kernel(
    q_ptr,
    k_cache_ptr,
    v_cache_ptr,
    out_ptr,
    cu_seqlens_q_ptr,
    context_lens_ptr,
    block_tables_ptr,
    qk_scale,  # softmax scale * log2(e)
    stride_qt,
    stride_qh,
    stride_kb,
    stride_ks,
    stride_kh,
    stride_vb,
    stride_vs,
    stride_vh,
    stride_ot,
    stride_oh,
    stride_bt,
    GROUP: tl.constexpr,  # query heads per KV head
    HEAD_DIM: tl.constexpr,  # of q and k
    HEAD_DIM_V: tl.constexpr,  # of v and the output
    PAGE: tl.constexpr,  # KV-cache block size
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr,
    HEAVY_FIRST: tl.constexpr,  # a sequence's last query tiles (the most keys under the causal mask) start first
    PDL: tl.constexpr,
):
    pdl_enter(PDL)
    m_block = tl.program_id(0)
    if HEAVY_FIRST:
        m_block = tl.num_programs(0) - 1 - m_block
    h = tl.program_id(1)
    seq = tl.program_id(2)

    q_start = tl.load(cu_seqlens_q_ptr + seq)
    q_len = tl.load(cu_seqlens_q_ptr + seq + 1) - q_start
    if m_block * BLOCK_M < q_len:
        ctx = tl.load(context_lens_ptr + seq)
        prefix = ctx - q_len  # absolute position of this sequence's first query
        kvh = h // GROUP

        offs_m = m_block * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        offs_dv = tl.arange(0, BLOCK_DV)
        mask_m = offs_m < q_len
        mask_d = offs_d < HEAD_DIM
        mask_dv = offs_dv < HEAD_DIM_V
        rows = (q_start + offs_m).to(tl.int64)
        q = tl.load(
            q_ptr + rows[:, None] * stride_qt + h * stride_qh + offs_d[None, :],
            mask=mask_m[:, None] & mask_d[None, :],
            other=0.0,
        )
        q_pos = prefix + offs_m  # [BLOCK_M]

        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)

        bt_row = block_tables_ptr + seq.to(tl.int64) * stride_bt
        k_base = k_cache_ptr + kvh * stride_kh
        v_base = v_cache_ptr + kvh * stride_vh
        # Keys [0, full_end) are visible to every query of this tile: no masking needed there.
        full_end = (prefix + m_block * BLOCK_M + 1) // BLOCK_N * BLOCK_N
        for start_n in range(0, full_end, BLOCK_N):
            m_i, l_i, acc = _attend_tile(
                q, q_pos, m_i, l_i, acc, start_n, full_end, k_base, v_base, bt_row, qk_scale,
                stride_kb, stride_ks, stride_vb, stride_vs, offs_n, offs_d, mask_d, offs_dv, mask_dv,
                PAGE, False,
            )
        # Keys past the last query of this tile are never attended to.
        kv_end = tl.minimum(ctx, prefix + (m_block + 1) * BLOCK_M)
        for start_n in range(full_end, kv_end, BLOCK_N):
            m_i, l_i, acc = _attend_tile(
                q, q_pos, m_i, l_i, acc, start_n, kv_end, k_base, v_base, bt_row, qk_scale,
                stride_kb, stride_ks, stride_vb, stride_vs, offs_n, offs_d, mask_d, offs_dv, mask_dv,
                PAGE, True,
            )

        o = acc / l_i[:, None]
        tl.store(
            out_ptr + rows[:, None] * stride_ot + h * stride_oh + offs_dv[None, :],
            o.to(out_ptr.dtype.element_ty),
            mask=mask_m[:, None] & mask_dv[None, :],
        )


# (BLOCK_M, BLOCK_N, num_warps, num_stages) on CUDA, by head width (BLOCK_D: narrow <= 64 < standard <= 128 < wide)
# and element size. From tests/gpu/tune_prefill_attention.py on an H200 (session 22, 16-token pages, bf16): standard
# heads (128, 32, 8, 2) over (64, 64, 4, 2): Llama-3-8B 8 x 2048 872 -> 850 us, a 2048-token chunk over 8k cached
# 1368 -> 1299 us, a nano-vllm step of Qwen3-0.6B 140 -> 139 us; wide heads (MLA's q/k 192, padded to 256)
# (128, 32, 4, 2) over (32, 32, 4, 2): DeepSeek-V2-Lite 8 x 1024 443 -> 224 us. Narrow heads are untuned. Launching
# each sequence's query tiles last to first (heavy_first) gained nothing there, so it stays off.
CUDA_CONFIGS = {
    ("narrow", 2): (64, 64, 4, 2),
    ("standard", 2): (128, 32, 8, 2),
    ("wide", 2): (128, 32, 4, 2),
    # fp32: tiles twice as big; wide ones without double buffering
    ("narrow", 4): (32, 32, 4, 2),
    ("standard", 4): (32, 32, 4, 2),
    ("wide", 4): (32, 32, 4, 1),
}


def _head_class(block_d: int) -> str:
    return "narrow" if block_d <= 64 else "standard" if block_d <= 128 else "wide"


def _launch_config(block_d: int, page: int, elem_size: int, device: torch.device):
    if device.type != "cuda":  # TRITON_INTERPRET: small tiles keep the interpreter quick
        return 16, max(page, 16), 4, 1
    block_m, block_n, warps, stages = CUDA_CONFIGS[(_head_class(block_d), min(elem_size, 4))]
    if block_d > 128:
        # Wide heads gather keys token by token, so BLOCK_N needn't cover a page (it keeps their tiles in bounds).
        return block_m, block_n, warps, stages
    return block_m, max(block_n, page), warps, stages


def paged_prefill_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    context_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float,
    max_seqlen_q: int | None = None,
    out: torch.Tensor | None = None,
    config: tuple[int, int, int, int] | None = None,
    heavy_first: bool = False,
) -> torch.Tensor:
    """Causal attention of packed queries against their sequences' paged KV; returns out [Tq, Hq, DV].

    q [Tq, Hq, D]; sequence i owns queries cu_seqlens_q[i]:cu_seqlens_q[i+1] (int32 [S+1]) and
    context_lens[i] (int32 [S]) cached tokens, the new ones included, so query j of it sits at
    position context_lens[i] - q_len_i + j and sees keys at positions <= its own.
    k_cache [num_blocks, block_size, Hkv, D], v_cache [num_blocks, block_size, Hkv, DV] (DV may
    differ from D; both may be strided views with a contiguous last dim); block_tables int32
    [S, max_blocks]. max_seqlen_q: the longest q_len_i; computed (one device sync) when None.
    Writes into ``out`` [Tq, Hq, DV] when given. `config` (BLOCK_M, BLOCK_N, num_warps, num_stages) and
    `heavy_first` (each sequence's query tiles launched last to first, so the tiles with the most keys under the
    causal mask start first) override the defaults for tuning runs (tests/gpu/tune_prefill_attention.py).
    """
    Tq, Hq, D = q.shape
    _, page, Hkv, Dk = k_cache.shape
    DV = v_cache.shape[-1]
    assert Dk == D and v_cache.shape[:3] == k_cache.shape[:3] and Hq % Hkv == 0
    assert q.stride(-1) == 1 and k_cache.stride(-1) == 1 and v_cache.stride(-1) == 1
    assert page & (page - 1) == 0, "block_size must be a power of two"
    num_seqs = cu_seqlens_q.shape[0] - 1
    if out is None:
        out = torch.empty_like(q) if DV == D else q.new_empty((Tq, Hq, DV))
    assert out.shape == (Tq, Hq, DV) and out.stride(-1) == 1
    if Tq == 0 or num_seqs == 0:
        return out
    if block_tables.stride(-1) != 1:
        block_tables = block_tables.contiguous()
    if max_seqlen_q is None:
        max_seqlen_q = int((cu_seqlens_q[1:] - cu_seqlens_q[:-1]).max().item())
    if max_seqlen_q <= 0:
        return out
    # tl.dot needs every tile dim >= 16.
    BLOCK_D = max(triton.next_power_of_2(D), 16)
    BLOCK_DV = max(triton.next_power_of_2(DV), 16)
    BLOCK_M, BLOCK_N, num_warps, num_stages = config or _launch_config(BLOCK_D, page, q.element_size(), q.device)
    assert BLOCK_N >= page or BLOCK_D > 128, f"BLOCK_N {BLOCK_N} must cover a KV block of {page} tokens"
    grid = (triton.cdiv(max_seqlen_q, BLOCK_M), Hq, num_seqs)
    _prefill_kernel[grid](
        q,
        k_cache,
        v_cache,
        out,
        cu_seqlens_q,
        context_lens,
        block_tables,
        float(scale) * _LOG2E,
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        v_cache.stride(0),
        v_cache.stride(1),
        v_cache.stride(2),
        out.stride(0),
        out.stride(1),
        block_tables.stride(0),
        GROUP=Hq // Hkv,
        HEAD_DIM=D,
        HEAD_DIM_V=DV,
        PAGE=page,
        BLOCK_M=BLOCK_M,
        BLOCK_N=BLOCK_N,
        BLOCK_D=BLOCK_D,
        BLOCK_DV=BLOCK_DV,
        HEAVY_FIRST=heavy_first,
        num_warps=num_warps,
        num_stages=num_stages,
        **pdl_args(q.device),
    )
    return out


def paged_prefill_attention_ref(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    context_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float,
    max_seqlen_q: int | None = None,
) -> torch.Tensor:
    """Plain-PyTorch reference for :func:`paged_prefill_attention` (fp32 math, q.dtype out [Tq, Hq, DV])."""
    Tq, Hq, D = q.shape
    Hkv, DV = k_cache.shape[2], v_cache.shape[-1]
    out = torch.empty_like(q) if DV == D else q.new_empty((Tq, Hq, DV))
    for i in range(cu_seqlens_q.shape[0] - 1):
        s, e = int(cu_seqlens_q[i]), int(cu_seqlens_q[i + 1])
        if e == s:
            continue
        n = int(context_lens[i])
        k = gather_context(k_cache, block_tables[i], n).float().repeat_interleave(Hq // Hkv, dim=1)
        v = gather_context(v_cache, block_tables[i], n).float().repeat_interleave(Hq // Hkv, dim=1)
        q_pos = torch.arange(n - (e - s), n, device=q.device)
        k_pos = torch.arange(n, device=q.device)
        scores = torch.einsum("qhd,khd->hqk", q[s:e].float(), k) * scale
        scores = scores.masked_fill(k_pos[None, None, :] > q_pos[None, :, None], float("-inf"))
        out[s:e] = torch.einsum("hqk,khd->qhd", scores.softmax(dim=-1), v).to(q.dtype)
    return out
