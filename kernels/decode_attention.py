"""Paged decode attention (one query token per sequence, GQA) as split-KV flash decoding."""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

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
    F16_DOTS: tl.constexpr,  # bf16 queries over a float8 cache: both dots in fp16 (see FP8_DOTS_IN_F16)
    ASM_WIDEN: tl.constexpr,  # F16_DOTS over e4m3 on CUDA: K and V widened by e4m3_to_f16 (see FP8_ASM_WIDEN)
    PIN_V: tl.constexpr,  # ASM_WIDEN: V widened as loaded, then laid out for the P V dot in fp16 (see FP8_PIN_V)
    ORDERED: tl.constexpr,
    PDL: tl.constexpr,
):
    pdl_enter(PDL)
    if ORDERED:
        b = tl.load(order_ptr + tl.program_id(0))
    else:
        b = tl.program_id(0)
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
            v = e4m3_to_f16(v, PIN_V)
        else:  # a float8 cache is widened to q's dtype for the dots (a no-op otherwise)
            k = k.to(q.dtype)
            v = v.to(q.dtype)
        qk = tl.dot(q, tl.trans(k), input_precision="ieee") * qk_scale  # [BLOCK_G, BLOCK_N]
        qk = tl.where(mask_n[None, :], qk, float("-inf"))
        m_i, l_i, acc = online_softmax_step(qk, v, m_i, l_i, acc)

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


def tile_configs_from_env(name: str, default: str, one: bool = False) -> tuple[tuple[int, int, int], ...]:
    """Space-separated "BLOCK_N,warps,stages" tiles (exactly one if one) from environment variable name (default
    when unset), checked here so that a typo fails at import with the variable's name rather than inside a launch."""
    text = os.environ.get(name, default)
    tiles = []
    for item in text.split():
        try:
            block_n, warps, stages = (int(v) for v in item.split(","))
        except ValueError:
            raise ValueError(f"{name}={text!r}: each tile is BLOCK_N,warps,stages (three integers), "
                             f"got {item!r}") from None
        if block_n < 16 or block_n & (block_n - 1) or warps not in (1, 2, 4, 8, 16) or stages < 1:
            raise ValueError(f"{name}={text!r}: in {item!r} BLOCK_N must be a power of two >= 16, warps one of "
                             "1, 2, 4, 8, 16 and stages >= 1")
        tiles.append((block_n, warps, stages))
    if not tiles or (one and len(tiles) > 1):
        raise ValueError(f"{name}={text!r}: give {'one' if one else 'at least one'} BLOCK_N,warps,stages tile, "
                         "or unset it")
    return tuple(tiles)


# (BLOCK_N, num_warps, num_stages) on CUDA; BLOCK_N is raised to the block size if smaller.
# Splits aim at SPLIT_WAVES * num_SMs programs, each with at least MIN_SPLIT_TOKENS tokens.
# tests/gpu/tune_decode_attention.py picked these on an H200 (bf16, D=128, GQA 2 and 4, timed in CUDA graphs,
# six shapes from bs1 @1k to bs256 @200..2048): the best geometric mean, 0.94x the time of the former
# (64, 4, 3) / 256 tokens; 80-94% of the copy rate at bs >= 64, and 7 instead of 9.9 us at bs1 @1k.
# For tuning runs the environment overrides all three:
# SPMD_DECODE_CONFIG=BLOCK_N,warps,stages, SPMD_DECODE_SPLIT_WAVES, SPMD_DECODE_MIN_SPLIT_TOKENS.
CUDA_CONFIG = tile_configs_from_env("SPMD_DECODE_CONFIG", "128,4,3", one=True)[0]
SPLIT_WAVES = int(os.environ.get("SPMD_DECODE_SPLIT_WAVES", "4"))
MIN_SPLIT_TOKENS = int(os.environ.get("SPMD_DECODE_MIN_SPLIT_TOKENS", "128"))
# bf16 queries over a float8 cache: widen K/V to fp16 (one conversion instruction per pair of values on Hopper;
# float8 to bf16 takes several) and run both dots in fp16 (more mantissa than bf16; decode's queries and softmax
# weights are far inside its range). Widening to bf16 left the nano-vllm case no faster than a bf16 cache.
FP8_DOTS_IN_F16 = True
# Which float8 tiles widen K and V with e4m3_to_f16 rather than Triton's own conversion: those of at least
# FP8_ASM_WIDEN warps (None: none; SPMD_DECODE_FP8_ASM_WIDEN sets it: a number, all, wide (4) or none). Nsight Compute
# (session 12, run_ncu_decode.sh, nano-vllm bs256) showed the float8 kernel bound by instruction issue (issue slots
# ~51-55% busy at ncu's locked 1.34 GHz, DRAM ~42%), V's share the largest: stored token by token, its P V dot
# operand pairs lie in adjacent tokens, and Triton, which moves the operand's layout change ahead of the widening
# (on bytes, the cheaper side), gathers them from shared memory a byte per instruction (LDS.U8, 9.5-9.8M of 108-113M
# instructions, each followed by a pairwise conversion and byte packing). Widening in assembly alone sped the
# (128, 4, 3) tile 261 -> 223 us a layer at bs256 but slowed the narrow ones (session 12, run_fp8_asm_widen.sh).
# FP8_PIN_V marks V's widening impure (e4m3_to_f16's PINNED), so Triton cannot move the layout change ahead of it:
# V is widened as loaded and goes through shared memory as fp16, read by ldmatrix.trans as a bf16 cache's is
# (ptx_census.py decode --pin-v: the 128 ld.shared.b8 and 96 prmt a tile gone, V's async copies 16-byte wide;
# shared memory 39 -> 56 KB at (64, 2, 6), 4 programs an SM). Timed (session 13, H200, run_fp8_pin_v.sh,
# run_fp8_pin_v2.sh): (64, 2, 6) widened in assembly with V pinned 218 us at nano-vllm bs256 (against 224 for
# (128, 4, 3) either way), Llama-3-8B bs1 @1k (128, 4, 3) 5.9 -> 5.3 us; the one-warp (32, 1, 6) tile slower pinned
# (Llama-3-8B bs64 @1k 45.9 -> 56.7 us), so it keeps Triton's conversion: hence 2 warps. nano-vllm fp8, two
# interleaved runs each: 29.6k / 30.3k tok/s (median step 4.6 ms) -> 30.7k / 30.8k (4.4 ms). (128, 4, 3) as the
# one-split tile with V pinned timed the same as without alone but took the engine's step to 5.1 ms, twice.
# V laid out by head dimension (tokens innermost) was tried against the gather first and was slower: read token by
# token its loads lost their vector width (229 -> 351 us), read a page at a time the tile's permute back to
# [tokens, D] cost more than the gather (283 us at its best tile, bf16 300 -> 370: session 13,
# run_v_by_dim_pages.sh at 5d26b0f), so it was removed.


def asm_widen_min_warps_from_env(name: str, default: str) -> int | None:
    """The fewest warps a float8 tile has for it to widen in assembly (None: no tile does) from environment variable
    name: a number, "all" (1), "wide" (4) or "none"; checked at import so that a typo names the variable."""
    text = os.environ.get(name, default)
    named = {"all": 1, "wide": 4, "none": None}
    if text in named:
        return named[text]
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ValueError(f"{name}={text!r}: give a number of warps (tiles of that many or more widen in assembly), "
                     "all, wide (4) or none, or unset it")


FP8_ASM_WIDEN = asm_widen_min_warps_from_env("SPMD_DECODE_FP8_ASM_WIDEN", "2")
FP8_PIN_V = os.environ.get("SPMD_DECODE_FP8_PIN_V", "1") != "0"  # SPMD_DECODE_FP8_PIN_V=0: Triton may move it
# A launch of one split runs a program per (sequence, KV head), each as long as its sequence's context; started in
# batch order, long ones land in the last wave and leave SMs idle (a list-scheduling model of nano-vllm bs256: the
# last wave ends at 1.17-1.29x the balanced time). Started longest first (the order argument, which the engine
# computes on the host per step: batch_inputs.longest_first), the short ones fill the tail. Timed (session 12, H200,
# run_decode_order.sh): nano-vllm bs256 bf16 300 -> 290 us a layer (97% of the copy rate), float8 222 -> 216; launches
# of several splits (bs64, bs16) no faster or slower (Qwen3-8B bs16 float8 30.8 -> 33.1 us), so they ignore it. In
# the engine (run_decode_order_e2e.sh) nano-vllm bf16's median decode step went 5.9 -> 5.7 ms (24.2k / 25.1k tok/s
# against 24.3k: within the run-to-run spread of its prefill). SPMD_DECODE_LONGEST_FIRST=0 turns it off.
LONGEST_FIRST = os.environ.get("SPMD_DECODE_LONGEST_FIRST", "1") != "0"
# Rounding q to float8 as well (each head's row scaled to float8's range) so that q k^T is a float8 dot and K is used
# as stored, as FlashAttention-3's float8 attention does, was timed (session 11, H200, run_fp8_query.sh at f91d704):
# no faster (nano-vllm bs256 229 -> 232 us a layer, nano-vllm fp8 29.1k -> 28.3-29.0k tok/s), so K's widening is
# not what holds the float8 kernel back, and q keeps its precision.
# A float8 tile is half a bf16 tile's bytes, so the bf16 tile keeps half the bytes in flight: it reached ~46% of the
# copy rate in float8 bytes (H200). Session 10 found removing the byte-wise V transpose (then by V laid out by head
# dimension) no faster on its own, and ruled out the cvt widening (widening by moving bits: slower); five stages took nano-vllm bs256 263 -> 241 us a
# layer. Session 11 (H200, tune_decode_attention.py --fp8 --configs; run_fp8_narrow.sh, run_fp8_split_tiles.sh)
# found narrower tiles faster still, and which one by split count: one split (nano-vllm bs256) (64, 2, 6) 229 us
# against 243 for (128, 4, 5), two splits (bs64) (32, 1, 6) nano-vllm 80 against 91, Llama-3-8B @1k 45 against 54
# (and 65), while the one-warp tile lost at one split (263 us: ten programs an SM give 2048 programs 1.6 waves) and
# every narrow tile lost at many splits, where each program holds few tiles (bs1 @1k 5.9 -> 8 us). nano-vllm fp8
# 28.2k -> 29.0k tok/s. Session 13 put one split back on (64, 2, 6), widened in assembly with V pinned (FP8_PIN_V).
# FP8_FEW_SPLIT_CONFIGS holds the (BLOCK_N, warps, stages) of a launch of one split, two, ...;
# launches of more splits take CUDA_CONFIG. SPMD_DECODE_FP8_CONFIGS="BLOCK_N,warps,stages ..." sets it. (Capping the
# registers, Triton's maxnreg 168, sped the (128, 4, 3) tile but not these: nano-vllm 28.3k against 29.0k.)
FP8_FEW_SPLIT_CONFIGS = tile_configs_from_env("SPMD_DECODE_FP8_CONFIGS", "64,2,6 32,1,6")
# The splits are combined by a second, tiny kernel. Combining them in the split kernel's last program per (sequence,
# KV head), found by an atomic counter, was tried and timed (session 7, H200, Llama-3-8B bs1 @1k): 10 us a layer
# against 6 + 1.6 us for the two launches, since one program then reads every split while the rest of the GPU idles.
# Reading the first K/V tile (all but the newest token) before the PDL wait was tried too (session 8, H200): bs1
# 81.3-81.9% -> 79.4% MBU, bs64 7.4 -> 7.8 ms (presumably programs parked at the wait hold SM slots the kernel
# before still needs).


def _launch_config(block_d: int, page: int, elem_size: int, cache_elem_size: int, num_splits: int,
                   device: torch.device):
    if device.type != "cuda":  # TRITON_INTERPRET: small tiles keep the interpreter quick
        return max(page, 16), 4, 1
    block_n, warps, stages = CUDA_CONFIG
    if cache_elem_size == 1 and num_splits <= len(FP8_FEW_SPLIT_CONFIGS):
        block_n, warps, stages = FP8_FEW_SPLIT_CONFIGS[num_splits - 1]
    if block_d > 128:
        block_n = min(block_n, 32)
    if elem_size >= 4:  # fp32: keep shared memory in bounds
        stages = min(stages, 2)
    return max(block_n, page), warps, stages


def _asm_widen(cache: torch.Tensor, num_warps: int) -> bool:
    """Whether a float8 launch widens with e4m3_to_f16: an e4m3 cache on a GPU with cvt.e4m3x2 (sm_89 and later),
    for the tiles FP8_ASM_WIDEN names."""
    if FP8_ASM_WIDEN is None or cache.dtype != torch.float8_e4m3fn or not cache.is_cuda:
        return False
    if torch.cuda.get_device_capability(cache.device) < (8, 9):
        return False
    return num_warps >= FP8_ASM_WIDEN


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1


def choose_num_splits(batch: int, num_kv_heads: int, max_context_len: int, device: torch.device) -> int:
    """Enough splits that batch * kv_heads * splits programs fill the GPU SPLIT_WAVES times,
    but no fewer than MIN_SPLIT_TOKENS tokens per split, and at most 32 splits."""
    programs = max(batch * num_kv_heads, 1)
    want = triton.cdiv(SPLIT_WAVES * _num_sms(device), programs)
    by_len = triton.cdiv(max(max_context_len, 1), MIN_SPLIT_TOKENS)
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
    order in which a launch of one split starts their programs (see LONGEST_FIRST); launches of more splits ignore it.
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
    f16_dots = FP8_DOTS_IN_F16 and q.dtype == torch.bfloat16 and k_cache.element_size() == 1
    mid_o, mid_lse, mo_strides, ml_strides = split_scratch(out, context_lens, num_splits)
    _decode_split_kernel[(B, Hkv, num_splits)](
        q,
        k_cache,
        v_cache,
        block_tables,
        context_lens,
        out,
        mid_o,
        mid_lse,
        order if order is not None else context_lens,
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
        PIN_V=FP8_PIN_V,
        ORDERED=order is not None and direct and LONGEST_FIRST,
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
