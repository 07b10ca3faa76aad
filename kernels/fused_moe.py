"""Fused mixture-of-experts MLP: tokens sorted by expert, then grouped GEMMs for silu(x·Wg)·(x·Wu) and ·W2 with
routing weights (experts in the activations' dtype, or float8 e4m3 with a float32 scale per weight block)."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .block_fp8 import dequantize_blocks
from .moe_align import moe_align_block_size
from .moe_route import sigmoid_gate_ref, sigmoid_gate_rows
from .pdl import pdl_args, pdl_enter
from .scaled_activations import (ACTIVATIONS, DEFAULT_ACTIVATIONS, _scale_groups, quantize_activations,
                                 quantize_activations_ref)
from .scaled_dot import _scaled_step, _zero_acc


@triton.jit(do_not_specialize=["num_slots"])  # T * top_k changes every step
def _moe_gate_up_kernel(
    x_ptr,
    w13_ptr,
    s13_ptr,  # SCALED: [E, 2I / SCALE_N, ceil(H / SCALE_K)] float32 block scales (else unused)
    xs_ptr,  # ACT: x's float32 scales [T, ceil(H / SCALE_K)] (else unused)
    h_ptr,
    hs_ptr,  # ACT: h's float32 scales [T * top_k, ceil(I / SCALE_K)], written here (else unused)
    sorted_ids_ptr,
    block_expert_ptr,
    shared_w13_ptr,  # HAS_SHARED: [2L, H], the shared experts' gate rows then up rows (else unused)
    num_slots,  # T * top_k: sorted ids >= num_slots are padding
    num_routed,  # HAS_SHARED: local experts from here on are shared_w13's slices of INTER features
    shared_inter,  # HAS_SHARED: L
    stride_xt,
    stride_xst,
    stride_we,
    stride_wn,
    stride_wk,
    stride_swn,
    stride_se,
    stride_sn,
    stride_sk,
    stride_ht,
    stride_hst,
    HIDDEN: tl.constexpr,
    INTER: tl.constexpr,
    TOP_K: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    SCALED: tl.constexpr,  # float8 weights, each SCALE_N x SCALE_K block times its scale
    SCALE_N: tl.constexpr,  # a multiple of BLOCK_N (a tile's features share one block row)
    SCALE_K: tl.constexpr,  # a multiple of BLOCK_K (a k-step lies in one block column)
    ACT: tl.constexpr,  # SCALED with x in float8, a scale per token per SCALE_K columns; h written the same way, so
    # BLOCK_N == SCALE_K. False: activations in the model's dtype
    SWAP: tl.constexpr,  # the products computed transposed, weights x rows (see _scaled_step)
    HAS_SHARED: tl.constexpr,  # experts past num_routed are shared experts' slices (fused_moe's shared_w13)
    PDL: tl.constexpr,
):
    """h[slot, n] = silu(x[tok] · w13[e, n]) * (x[tok] · w13[e, INTER + n]) for one block of one expert."""
    pdl_enter(PDL)
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    expert = tl.load(block_expert_ptr + pid_m)
    if expert < 0:  # past the padded end of the sorted list (the grid is sized for the worst case)
        return
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    slots = tl.load(sorted_ids_ptr + offs_m)
    mask_m = slots < num_slots
    tok = (slots // TOP_K).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < INTER
    offs_k = tl.arange(0, BLOCK_K)

    a_ptrs = x_ptr + tok[:, None] * stride_xt + offs_k[None, :]
    w_base = w13_ptr + expert.to(tl.int64) * stride_we
    row_stride = stride_wn
    up_offset = INTER * stride_wn
    if HAS_SHARED:
        if expert >= num_routed:  # shared slice s: gate rows s * INTER ..., up rows L + s * INTER ...
            w_base = shared_w13_ptr + (expert - num_routed).to(tl.int64) * INTER * stride_swn
            row_stride = stride_swn
            up_offset = shared_inter * stride_swn
    g_ptrs = w_base + offs_n[None, :] * row_stride + offs_k[:, None] * stride_wk  # [BLOCK_K, BLOCK_N]
    u_ptrs = g_ptrs + up_offset
    # The block rows of this tile's gate and up features (INTER is a multiple of SCALE_N when SCALED).
    sg_ptr = s13_ptr + expert.to(tl.int64) * stride_se + (pid_n * BLOCK_N // SCALE_N) * stride_sn
    su_ptr = sg_ptr + (INTER // SCALE_N) * stride_sn
    acc_g = _zero_acc(BLOCK_M, BLOCK_N, SWAP)
    acc_u = _zero_acc(BLOCK_M, BLOCK_N, SWAP)
    for k0 in range(0, HIDDEN, BLOCK_K):
        mask_k = k0 + offs_k < HIDDEN
        a = tl.load(a_ptrs, mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        wmask = mask_k[:, None] & mask_n[None, :]
        wg = tl.load(g_ptrs, mask=wmask, other=0.0)
        wu = tl.load(u_ptrs, mask=wmask, other=0.0)
        if SCALED:
            a_scale = _row_scales(xs_ptr + tok * stride_xst + k0 // SCALE_K, mask_m, ACT, SWAP)
            acc_g = _scaled_step(acc_g, a, wg, a_scale * tl.load(sg_ptr + (k0 // SCALE_K) * stride_sk), SWAP)
            acc_u = _scaled_step(acc_u, a, wu, a_scale * tl.load(su_ptr + (k0 // SCALE_K) * stride_sk), SWAP)
        else:
            acc_g = tl.dot(a, wg, acc_g, input_precision="ieee")
            acc_u = tl.dot(a, wu, acc_u, input_precision="ieee")
        a_ptrs += BLOCK_K
        g_ptrs += BLOCK_K * stride_wk
        u_ptrs += BLOCK_K * stride_wk
    if SWAP:
        acc_g, acc_u = tl.trans(acc_g), tl.trans(acc_u)
    h = acc_g / (1.0 + tl.exp(-acc_g)) * acc_u
    if ACT:  # this tile is one SCALE_K group of h's columns: a scale per row, as x's
        h, h_scale = _scale_groups(tl.where(mask_n[None, :], h, 0.0))
        tl.store(hs_ptr + slots.to(tl.int64) * stride_hst + pid_n, h_scale, mask=mask_m)
    tl.store(
        h_ptr + slots[:, None].to(tl.int64) * stride_ht + offs_n[None, :],
        h.to(h_ptr.dtype.element_ty),
        mask=mask_m[:, None] & mask_n[None, :],
    )


@triton.jit(do_not_specialize=["num_slots"])  # T * top_k changes every step
def _moe_down_kernel(
    h_ptr,
    w2_ptr,
    s2_ptr,  # SCALED: [E, ceil(H / SCALE_N), ceil(I / SCALE_K)] float32 block scales (else unused)
    hs_ptr,  # ACT: h's float32 scales [T * top_k, ceil(I / SCALE_K)] (else unused)
    y_ptr,
    weights_ptr,
    sorted_ids_ptr,
    block_expert_ptr,
    shared_w2_ptr,  # HAS_SHARED: [H, L], the shared experts' down projection (else unused)
    num_slots,
    num_routed,
    stride_ht,
    stride_hst,
    stride_we,
    stride_wn,
    stride_wk,
    stride_swn,
    stride_se,
    stride_sn,
    stride_sk,
    stride_yt,
    stride_tw_t,
    stride_tw_k,
    HIDDEN: tl.constexpr,
    INTER: tl.constexpr,
    TOP_K: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    SCALED: tl.constexpr,
    SCALE_N: tl.constexpr,
    SCALE_K: tl.constexpr,
    ACT: tl.constexpr,
    SWAP: tl.constexpr,
    HAS_SHARED: tl.constexpr,
    PDL: tl.constexpr,
):
    """y[slot, n] = weight[slot] * (h[slot] · w2[e, n]) for one block of one expert."""
    pdl_enter(PDL)
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    expert = tl.load(block_expert_ptr + pid_m)
    if expert < 0:
        return
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    slots = tl.load(sorted_ids_ptr + offs_m)
    mask_m = slots < num_slots
    slots64 = slots.to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < HIDDEN
    offs_k = tl.arange(0, BLOCK_K)

    a_ptrs = h_ptr + slots64[:, None] * stride_ht + offs_k[None, :]
    w_base = w2_ptr + expert.to(tl.int64) * stride_we
    row_stride = stride_wn
    if HAS_SHARED:
        if expert >= num_routed:  # shared slice s: columns s * INTER ... of shared_w2
            w_base = shared_w2_ptr + (expert - num_routed).to(tl.int64) * INTER * stride_wk
            row_stride = stride_swn
    w_ptrs = w_base + offs_n[None, :] * row_stride + offs_k[:, None] * stride_wk  # [BLOCK_K, BLOCK_N]
    s_ptr = s2_ptr + expert.to(tl.int64) * stride_se + (pid_n * BLOCK_N // SCALE_N) * stride_sn
    acc = _zero_acc(BLOCK_M, BLOCK_N, SWAP)
    for k0 in range(0, INTER, BLOCK_K):
        mask_k = k0 + offs_k < INTER
        a = tl.load(a_ptrs, mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        w = tl.load(w_ptrs, mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        if SCALED:
            a_scale = _row_scales(hs_ptr + slots64 * stride_hst + k0 // SCALE_K, mask_m, ACT, SWAP)
            acc = _scaled_step(acc, a, w, a_scale * tl.load(s_ptr + (k0 // SCALE_K) * stride_sk), SWAP)
        else:
            acc = tl.dot(a, w, acc, input_precision="ieee")
        a_ptrs += BLOCK_K
        w_ptrs += BLOCK_K * stride_wk
    if SWAP:
        acc = tl.trans(acc)
    wt = tl.load(weights_ptr + (slots64 // TOP_K) * stride_tw_t + (slots64 % TOP_K) * stride_tw_k,
                 mask=mask_m, other=0.0).to(tl.float32)
    acc = acc * wt[:, None]
    tl.store(
        y_ptr + slots64[:, None] * stride_yt + offs_n[None, :],
        acc.to(y_ptr.dtype.element_ty),
        mask=mask_m[:, None] & mask_n[None, :],
    )


@triton.jit
def _row_scales(ptr, mask_m, ACT: tl.constexpr, SWAP: tl.constexpr):
    """Float8 activations (ACT): the tile rows' scales for this k-step's columns, [BLOCK_M, 1] ([1, BLOCK_M] with
    SWAP); else 1."""
    if ACT:
        scales = tl.load(ptr, mask=mask_m, other=0.0)
        if SWAP:
            scales = scales[None, :]
        else:
            scales = scales[:, None]
    else:
        scales = 1.0
    return scales


def _unfilled(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The per-slot products: only the rows of pairs computed here are written, and only those are read back by
    the sum, so no zero fill (tests fill it with NaN to prove the rest is never read)."""
    return torch.empty(shape, dtype=dtype, device=device)


@triton.jit
def _moe_sum_kernel(y_ptr, ids_ptr, valid_ptr, out_ptr, add_ptr, x_ptr, gate_ptr, first_expert, num_local,
                    stride_yt, stride_it, stride_ot, stride_at, stride_xt, HIDDEN: tl.constexpr, TOP_K: tl.constexpr,
                    HAS_VALID: tl.constexpr, HAS_ADD: tl.constexpr, ADD_GATE: tl.constexpr, BLOCK_H: tl.constexpr,
                    PDL: tl.constexpr):
    """out[t] = sum over the slots j computed on this rank of y[t * TOP_K + j], in fp32, in slot order; the
    rows of other ranks' experts and of invalid tokens were never written and are not read. HAS_ADD: plus add[t]
    (shared experts' output), scaled by sigmoid(x[t] . gate) with ADD_GATE (Qwen2-MoE's shared expert gate)."""
    pdl_enter(PDL)
    t = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = offs < HIDDEN
    acc = tl.zeros([BLOCK_H], dtype=tl.float32)
    for j in tl.static_range(TOP_K):
        local = tl.load(ids_ptr + t * stride_it + j) - first_expert
        kept = (local >= 0) & (local < num_local)
        if HAS_VALID:
            kept = kept & (tl.load(valid_ptr + t) != 0)
        row_mask = tl.where(kept, mask, False)  # (not mask & kept: the interpreter rejects a scalar in the mask)
        acc += tl.load(y_ptr + (t * TOP_K + j) * stride_yt + offs, mask=row_mask, other=0.0).to(tl.float32)
    if HAS_ADD:
        shared = tl.load(add_ptr + t * stride_at + offs, mask=mask, other=0.0).to(tl.float32)
        if ADD_GATE:  # the whole row's dot in every program of the row: H loads of x and gate, not a launch
            row = t + tl.arange(0, 1)
            shared = shared * sigmoid_gate_rows(x_ptr, stride_xt, row, row >= 0, gate_ptr, HIDDEN, 1, BLOCK_H)
        acc += shared
    tl.store(out_ptr + t * stride_ot + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)


# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages) on CUDA, by routed rows per local expert (T * k / E_local):
# small blocks for decode, larger for big batches and prefill. medium and large from tests/gpu/tune_fused_moe.py on
# an H200 (DeepSeek-V2-Lite and Qwen3-30B-A3B shapes): at 6-256 rows per expert (64, 64, 64, 4, 3) was best or tied,
# beyond that (128, 128, 64, 8, 3), e.g. 0.86x the time of the old single large tile on a 4 x 2048 prefill. Small
# (session 32, run_moe_small_tiles.sh): at batch 1 a narrow, deep tile keeps more loads in flight a program; the
# experts' whole layer (both kernels) in 27.3 / 35.3 / 29.3 us against (16, 64, 64, 4, 3)'s 35.4 / 41.5 / 35.3 for
# Qwen1.5-MoE / DeepSeek-V2-Lite / Qwen3-30B-A3B (60-70% of the weight-read bound), and first or tied at bs8.
CUDA_CONFIGS = {
    "small": (16, 32, 128, 2, 4),
    "medium": (64, 64, 64, 4, 3),
    "large": (128, 128, 64, 8, 3),
}


# Float8 experts (model.expert_dtype=fp8), with float8 activations (the default, below) at every batch size: the
# gate / up step spans a whole 128-feature scale group of x (FP8_ACT_BLOCK_K) and writes one of h (BLOCK_N 128).
# tune_fused_moe.py --fp8 --activations model,fp8 on an H200 (session 16, run_fp8_decode_act.sh at 5a39a97): small
# (16, 64, 64, 4, 3) at 6 rows an expert (DeepSeek-V2-Lite bs64: 174 us), medium (32, 64, 64, 4, 3) at 24-25
# (bs256: 209 us; ep4 bs64x4 78), large (64, 128, 64, 4, 4) from 64 up (0.91-0.95x of (64, 64, 64, 4, 3): ep4 bs1024x4
# 268 against 290 us, Qwen3-30B-A3B ep4 bs256x4 106 against 111, a 4 x 2048 prefill 483 against 518, one GPU's
# 8192-token chunk 1783 against 2069).
CUDA_CONFIGS_FP8 = {
    "small": (16, 64, 64, 4, 3),
    "medium": (32, 64, 64, 4, 3),
    "large": (64, 128, 64, 4, 4),
}
FP8_KIND_ROWS = (8, 32)  # rows per local expert up to which float8's small / medium tiles apply
# Experts in the model's dtype: the down kernel's (BLOCK_N, BLOCK_K, num_warps, num_stages) by the same kinds where
# it should differ from the gate / up kernel's (BLOCK_M is shared: the grouping's); None takes the gate / up tile.
# The down kernel's K is the experts' intermediate size (768-1408), gate / up's is H, and at decode batch 1 on an
# H200 it read its weights at 68% of the copy rate against gate / up's 81% (Qwen3-30B-A3B, session 33's profile).
# None everywhere: tests/gpu/tune_fused_moe.py --down-tiles (session 34, run_moe_down_tiles.sh) found (64, 256, 4, 3)
# first at bs1 on all three MoE shapes by only 0.4-0.8 us of 27-36 (both kernels), and fifth at DeepSeek-V2-Lite bs8.
DOWN_TILES: dict[str, tuple[int, int, int, int] | None] = {"small": None, "medium": None, "large": None}
# With float8 activations a k-step spans a whole 128-feature scale group: session 15's sweep put 128-wide steps
# first on every shape that took them, 0.83-0.89x the time of 64-wide ones (half the accumulator rescales a group).
FP8_ACT_BLOCK_K = 128
# Float8 activations at small / medium tiles (under 64 rows) compute each product transposed, weights x rows, so
# that sm_90 runs it as a float8 wgmma (see _scaled_step). H200, the kernel alone (session 17, run_moe_swap.sh):
# DeepSeek-V2-Lite bs256 194 against 209 us, ep4 bs1024x4 333 against 437, Qwen3-30B-A3B ep4 bs256x4 107 against
# 130; bs64 within 2%. End to end, decode bs256 @1k 11.1 against 11.5 ms a step (Qwen3-30B-A3B 20.0 against 20.8).
# SPMD_MOE_FP8_SWAP=0 computes them as written.
SWAP_AB = os.environ.get("SPMD_MOE_FP8_SWAP", "1") == "1"


def fp8_activations_fit(scale_block: tuple[int, int]) -> bool:
    """Whether float8 experts with blocks of (rows, columns) can take float8 activations: h is scaled a group of
    `columns` features at a time by the program that writes them, which must lie in one block row (else fused_moe
    runs them with activations in the model's dtype)."""
    return scale_block[0] % scale_block[1] == 0


def config_kind(num_slots: int, num_local: int, fp8: bool = False, num_experts: int | None = None) -> str:
    """Which CUDA_CONFIGS (fp8: CUDA_CONFIGS_FP8) entry a call with num_slots = T * k pairs over num_local experts
    uses. Float8's thresholds are rows a local expert gets under even routing, T * k / num_experts (all ranks'
    experts); bf16's were tuned against T * k / num_local, which overstates them when experts are split over
    ranks (4x at ep4)."""
    rows = num_slots / max(num_experts or num_local, 1) if fp8 else num_slots / max(num_local, 1)
    small, medium = FP8_KIND_ROWS if fp8 else (4, 256)
    return "small" if rows <= small else "medium" if rows <= medium else "large"


def _launch_config(num_slots: int, num_local: int, elem_size: int, device: torch.device, fp8: bool = False,
                   num_experts: int | None = None):
    if device.type != "cuda":  # TRITON_INTERPRET: the smallest tiles tl.dot accepts
        return 16, 32, 32, 4, 1
    configs = CUDA_CONFIGS_FP8 if fp8 else CUDA_CONFIGS
    bm, bn, bk, warps, stages = configs[config_kind(num_slots, num_local, fp8, num_experts)]
    if elem_size >= 4:  # fp32: keep shared memory in bounds
        stages = min(stages, 2)
    return bm, bn, bk, warps, stages


def _scale_strides(scale: torch.Tensor, scaled: bool) -> tuple[int, int, int]:
    return (scale.stride(0), scale.stride(1), scale.stride(2)) if scaled else (0, 0, 0)


def fused_moe(
    x: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
    first_expert: int = 0,
    valid: torch.Tensor | None = None,
    w13_scale: torch.Tensor | None = None,
    w2_scale: torch.Tensor | None = None,
    scale_block: tuple[int, int] | None = None,
    activations: str | None = None,
    num_experts: int | None = None,
    add: torch.Tensor | None = None,
    add_gate: torch.Tensor | None = None,
    shared_w13: torch.Tensor | None = None,
    shared_w2: torch.Tensor | None = None,
) -> torch.Tensor:
    """sum_j topk_weights[t, j] * w2[e] · silu(w13[e, :I] · x[t]) * (w13[e, I:] · x[t]),
    e = topk_ids[t, j] - first_expert.

    x [T, H]; w13 [E_local, 2I, H] (gate rows, then up rows); w2 [E_local, H, I]; topk_weights
    [T, k] (float32); topk_ids int [T, k]. Ids outside [first_expert, first_expert + E_local)
    (other ranks' experts) and tokens with ``valid`` (bool [T]) False add nothing and are not
    computed. Returns a new [T, H] in x.dtype (fp32 accumulation; the [T, k, I] activations and
    the per-slot [T, k, H] products are rounded to x.dtype). No host sync: CUDA-graph safe.

    Float8 experts: w13 / w2 in float8 e4m3 whose blocks of ``scale_block`` = (rows, columns) are multiplied by
    ``w13_scale`` [E_local, 2I / rows, ceil(H / columns)] / ``w2_scale`` [E_local, ceil(H / rows), ceil(I /
    columns)] (float32), DeepSeek-V3's layout; I must be a multiple of rows (gate and up in separate blocks) and
    both sides powers of two of at least 16. ``activations`` (float8 experts only): "model" keeps x and h in
    x.dtype and widens the weights to it; "fp8" rounds x and h to float8 with a scale per token per ``columns``
    features, as DeepSeek-V3 was trained (and as vLLM / SGLang run it), so both GEMMs run float8 tensor-core dots
    (rows must be a multiple of columns, else "model"). None: DEFAULT_ACTIVATIONS ("fp8").
    ``num_experts`` (all ranks' experts; default E_local) sizes float8 experts' tiles by the rows a local expert
    expects (config_kind).
    ``add`` [T, H] (shared experts' output) joins each token's sum in the last kernel, times sigmoid(x[t] · add_gate)
    where ``add_gate`` [H] is given (Qwen2-MoE's shared expert gate): the launches of a separate add, and of the
    gate's product, sigmoid and multiply, saved.
    ``shared_w13`` [2L, H] (gate rows, then up rows) and ``shared_w2`` [H, L] (a shared MLP's weights as its
    linear layers hold them, L = S * I, experts in x.dtype): S more local experts, E_local ... E_local + S - 1, the
    MLP's features cut into S slices of I, which moe_route's `num_shared` slots route every token to (so with all
    experts on this rank: other ranks' expert ids would land on these slices). The shared
    MLP then runs inside these kernels, its tiles filling the grid beside the routed ones, not as launches of its
    own (decode's small batches: a grid under one wave, tests/gpu/run_moe_small_tiles.sh).
    """
    T, H = x.shape
    E, two_i, Hw = w13.shape
    inter = two_i // 2
    k = topk_ids.shape[1]
    assert Hw == H and two_i == 2 * inter and w2.shape == (E, H, inter)
    assert topk_weights.shape == topk_ids.shape == (T, k)
    assert x.stride(-1) == 1
    scaled = w13_scale is not None
    if scaled:
        sn, sk = scale_block
        assert w13.dtype == w2.dtype == torch.float8_e4m3fn and w2_scale is not None
        assert sn >= 16 and sk >= 16 and sn & (sn - 1) == 0 and sk & (sk - 1) == 0 and inter % sn == 0
        assert w13_scale.shape == (E, two_i // sn, triton.cdiv(H, sk))
        assert w2_scale.shape == (E, triton.cdiv(H, sn), triton.cdiv(inter, sk))
    assert add is None or (add.shape == (T, H) and add.stride(-1) == 1)
    assert add_gate is None or (add is not None and add_gate.shape == (H,) and add_gate.stride(-1) == 1)
    num_shared = _shared_slices(shared_w13, shared_w2, w13, w2, scaled)
    n = T * k
    if n == 0 or E + num_shared == 0 or inter == 0:
        return gated_add_ref(torch.zeros((T, H), dtype=torch.float32, device=x.device), x, add, add_gate).to(x.dtype)
    x_in = x  # (the gate reads x as given, not float8-rounded activations)
    y = _unfilled((n, H), x.dtype, x.device)
    num_local = E + num_shared
    bm, bn, bk, warps, stages = _launch_config(n, num_local, x.element_size(), x.device, scaled, num_experts)
    down_tile = None if scaled else DOWN_TILES.get(config_kind(n, num_local))
    activations = DEFAULT_ACTIVATIONS if activations is None else activations
    if activations not in ACTIVATIONS:
        raise ValueError(f"fused_moe activations={activations!r}: choose one of {', '.join(ACTIVATIONS)}")
    if scaled:  # a tile inside one scale block (both are powers of two)
        bn, bk = min(bn, sn), min(bk, sk)
        if not fp8_activations_fit(scale_block):
            activations = "model"
    else:
        sn = sk = 1
        w13_scale = w2_scale = w13  # not read
        activations = "model"
    act = activations == "fp8"
    bn_up = sk if act else bn  # scaled h: one program writes a whole scale group of its columns
    if act and x.is_cuda:
        bk = min(FP8_ACT_BLOCK_K, sk)
    # Two [BLOCK_M, 128] fp32 accumulators: at 4 warps 255 registers and a spill (ptx_census.py moe --tile large
    # --weights fp8), at 8 warps 128.
    warps_up = max(warps, 8) if bm * bn_up >= 64 * 128 else warps
    swap = SWAP_AB and act and bm < 64  # see _scaled_step
    if act:
        x, x_scale = quantize_activations(x, sk)
        h = torch.empty((n, inter), dtype=torch.float8_e4m3fn, device=x.device)
        h_scale = torch.empty((n, triton.cdiv(inter, sk)), dtype=torch.float32, device=x.device)
    else:
        h = torch.empty((n, inter), dtype=x.dtype, device=x.device)
        x_scale = h_scale = h  # not read
    sorted_ids, block_expert, _ = moe_align_block_size(topk_ids, bm, num_local, first_expert, valid)
    num_blocks = block_expert.shape[0]
    if not num_shared:
        shared_w13, shared_w2 = w13, w2  # not read
    _moe_gate_up_kernel[(num_blocks, triton.cdiv(inter, bn_up))](
        x, w13, w13_scale, x_scale, h, h_scale, sorted_ids, block_expert, shared_w13, n, E, num_shared * inter,
        x.stride(0), x_scale.stride(0), w13.stride(0), w13.stride(1), w13.stride(2), shared_w13.stride(-2),
        *_scale_strides(w13_scale, scaled), h.stride(0), h_scale.stride(0),
        HIDDEN=H, INTER=inter, TOP_K=k, BLOCK_M=bm, BLOCK_N=bn_up, BLOCK_K=bk, SCALED=scaled, SCALE_N=sn,
        SCALE_K=sk, ACT=act, SWAP=swap, HAS_SHARED=num_shared > 0, num_warps=warps_up, num_stages=stages,
        **pdl_args(x.device),
    )
    if down_tile is not None:  # (DOWN_TILES; fp32 keeps _launch_config's shared-memory cap)
        bn, bk, warps, stages = down_tile
        stages = min(stages, 2) if x.element_size() >= 4 else stages
    _moe_down_kernel[(num_blocks, triton.cdiv(H, bn))](
        h, w2, w2_scale, h_scale, y, topk_weights, sorted_ids, block_expert, shared_w2, n, E,
        h.stride(0), h_scale.stride(0), w2.stride(0), w2.stride(1), w2.stride(2), shared_w2.stride(-2),
        *_scale_strides(w2_scale, scaled), y.stride(0), topk_weights.stride(0), topk_weights.stride(1),
        HIDDEN=H, INTER=inter, TOP_K=k, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, SCALED=scaled, SCALE_N=sn, SCALE_K=sk,
        ACT=act, SWAP=swap, HAS_SHARED=num_shared > 0, num_warps=warps, num_stages=stages,
        **pdl_args(h.device),
    )
    out = torch.empty((T, H), dtype=y.dtype, device=y.device)
    ids = topk_ids if topk_ids.stride(-1) == 1 else topk_ids.contiguous()
    block_h = min(triton.next_power_of_2(H), 1024)
    _moe_sum_kernel[(T, triton.cdiv(H, block_h))](
        y, ids, valid.contiguous() if valid is not None else ids, out, add if add is not None else y, x_in,
        add_gate if add_gate is not None else y, first_expert, num_local,
        y.stride(0), ids.stride(0), out.stride(0), add.stride(0) if add is not None else 0, x_in.stride(0),
        HIDDEN=H, TOP_K=k, HAS_VALID=valid is not None, HAS_ADD=add is not None, ADD_GATE=add_gate is not None,
        BLOCK_H=block_h, **pdl_args(y.device),
    )
    return out


def _shared_slices(shared_w13: torch.Tensor | None, shared_w2: torch.Tensor | None, w13: torch.Tensor,
                   w2: torch.Tensor, scaled: bool) -> int:
    """How many I-feature slices (extra local experts) a shared MLP's weights hold: 0 without them."""
    if shared_w13 is None:
        assert shared_w2 is None
        return 0
    E, two_i, H = w13.shape
    inter = two_i // 2
    assert not scaled and shared_w13.dtype == shared_w2.dtype == w13.dtype, "shared slices: experts in x.dtype"
    two_l = shared_w13.shape[0]
    assert inter and two_l % two_i == 0 and shared_w13.shape == (two_l, H) and shared_w2.shape == (H, two_l // 2)
    # The kernels step along k with the routed experts' stride.
    assert shared_w13.stride(1) == w13.stride(2) and shared_w2.stride(1) == w2.stride(2)
    return two_l // two_i


def with_shared_slices(w13: torch.Tensor, w2: torch.Tensor, shared_w13: torch.Tensor | None,
                       shared_w2: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """w13 / w2 with a shared MLP's S slices of I features appended as experts E_local ... E_local + S - 1: the
    experts fused_moe's `shared_w13` / `shared_w2` stand for (a copy; its reference's view of them)."""
    if shared_w13 is None:
        return w13, w2
    E, two_i, H = w13.shape
    inter = two_i // 2
    slices = shared_w13.shape[0] // two_i
    gate, up = shared_w13.view(2, slices, inter, H).unbind(0)
    return (torch.cat([w13, torch.cat([gate, up], dim=1)]),
            torch.cat([w2, shared_w2.view(H, slices, inter).permute(1, 0, 2)]))


def gated_add_ref(out: torch.Tensor, x: torch.Tensor, add: torch.Tensor | None,
                   add_gate: torch.Tensor | None) -> torch.Tensor:
    """fp32 `out` plus `add`, scaled by sigmoid(x · add_gate) per token where add_gate is given: fused_moe's `add`
    in its reference, its no-expert case and the CPU path of spmd_infer's MoE layer."""
    if add is None:
        return out
    shared = add.float()
    if add_gate is not None:
        shared = shared * sigmoid_gate_ref(x, add_gate)[:, None]
    return out + shared


def fused_moe_ref(
    x: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
    first_expert: int = 0,
    valid: torch.Tensor | None = None,
    w13_scale: torch.Tensor | None = None,
    w2_scale: torch.Tensor | None = None,
    scale_block: tuple[int, int] | None = None,
    activations: str = "model",
    add: torch.Tensor | None = None,
    add_gate: torch.Tensor | None = None,
    shared_w13: torch.Tensor | None = None,
    shared_w2: torch.Tensor | None = None,
) -> torch.Tensor:
    """Plain-PyTorch reference for :func:`fused_moe` (a loop over local experts, fp32 math, x.dtype out; float8
    experts dequantized by their block scales first; float8 activations ("fp8"): x and h rounded as the kernel
    stores them, a token's scale_block[1] features at a time; `add`, gated by `add_gate`, added in fp32; a shared
    MLP's slices as more experts, with_shared_slices)."""
    w13, w2 = with_shared_slices(w13, w2, shared_w13, shared_w2)
    def act(t: torch.Tensor) -> torch.Tensor:
        if activations == "model":
            return t
        q, scale = quantize_activations_ref(t, scale_block[1])
        return dequantize_blocks(q, scale, (1, scale_block[1]))

    if w13_scale is not None:
        w13, w2 = dequantize_blocks(w13, w13_scale, scale_block), dequantize_blocks(w2, w2_scale, scale_block)
    out_dtype, x_in = x.dtype, x
    x = act(x.float())
    T, H = x.shape
    E, two_i, _ = w13.shape
    inter = two_i // 2
    out = torch.zeros(T, H, dtype=torch.float32, device=x.device)
    local = topk_ids.long() - first_expert
    if valid is not None:
        local = torch.where(valid.bool()[:, None], local, -1)
    for e in range(E):
        tok, slot = torch.where(local == e)
        if tok.numel() == 0:
            continue
        gu = F.linear(x[tok].float(), w13[e].float())
        h = act(F.silu(gu[:, :inter]) * gu[:, inter:])
        y = F.linear(h, w2[e].float()) * topk_weights[tok, slot, None].float()
        out.index_add_(0, tok, y)
    return gated_add_ref(out, x_in, add, add_gate).to(out_dtype)

