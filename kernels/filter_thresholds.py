"""The sampler's top-k / top-p / min-p threshold of each row from its sorted candidates, in one launch a row group.

Unfused, a group's threshold took ~25 small launches after its sort (scaling, the k-th value, the row's exp sum, the
probabilities, the min-p test, the masses, the count, the gather), each a few microseconds of host time: at small
batches the step's host time, not the GPU, set the pace (Qwen3-0.6B decode @1k on an H200 with its checkpoint's
filters: bs1 1.5 ms a step against 1.1 greedy). One program a row does all of it here, summing in an order fixed by
the row alone (the exp sum in lanes over the vocabulary, the masses in tiles carried from the row's start: the two
kernels this replaced summed so), so a row's threshold is the same bits in any batch. The rules themselves are
spmd_infer.layers.sampler's (its module docstring).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .pdl import pdl_args, pdl_enter
from .sampling import (
    CUDA_CUMSUM_BLOCK,
    CUDA_EXP_SUM_BLOCK,
    _scaled_exp,
    masked_exp_sum_ref,
    row_cumsum_ref,
)


# Warps of a row's program on CUDA: a lone row runs on one SM, whose exp sum over the vocabulary they hide the latency
# of (tune_candidate_thresholds.py, H200, 152k vocabulary: 4 warps 125 us a call at 1 row, 147 at 256; 16 83 / 98;
# 32 75 / 90). Fixed, never from the batch: a row's sums keep one order in any batch.
THRESHOLD_WARPS = 32


@triton.jit(do_not_specialize=["vocab", "num_cand", "stride_l", "stride_c"])
def _candidate_thresholds_kernel(
    logits_ptr,
    cand_ptr,
    temperature_ptr,
    top_k_ptr,
    top_p_ptr,
    min_p_ptr,
    tau_ptr,
    count_ptr,
    max_ptr,
    z_ptr,
    vocab,
    num_cand,
    stride_l,
    stride_c,
    BLOCK: tl.constexpr,  # the exp sum's lane width
    CAND_BLOCK: tl.constexpr,  # the mass scan's tile
    NEED_TOP_P: tl.constexpr,
    NEED_MIN_P: tl.constexpr,
    LIBDEVICE_EXP: tl.constexpr,  # CUDA: libdevice expf, as torch.exp on the GPU (tl.exp is ex2.approx)
    PDL: tl.constexpr,
):
    pdl_enter(PDL)
    row = tl.program_id(0)
    temp = tl.load(temperature_ptr + row)
    inv = tl.where(temp > 0.0, temp, 1.0)
    cand_row = cand_ptr + row.to(tl.int64) * stride_c
    m = tl.math.div_rn(tl.load(cand_row).to(tl.float32), inv)  # the row's largest scaled value
    k = tl.load(top_k_ptr + row)
    kth = tl.math.div_rn(tl.load(cand_row + tl.minimum(tl.maximum(k, 1), num_cand) - 1).to(tl.float32), inv)
    tau_k = tl.where((k > 0) & (k < vocab), kth, float("-inf"))
    offs_c = tl.arange(0, CAND_BLOCK)
    count = tl.zeros([], tl.int32)
    if NEED_TOP_P or NEED_MIN_P:
        # The softmax denominator over the top-k set, ties past the candidates counted.
        offs = tl.arange(0, BLOCK)
        row_ptr = logits_ptr + row.to(tl.int64) * stride_l
        acc = tl.zeros([BLOCK], tl.float32)
        for v0 in range(0, vocab, BLOCK):
            ids = v0 + offs
            x, e = _scaled_exp(row_ptr, ids, ids < vocab, inv, m, LIBDEVICE_EXP)
            acc += tl.where(x >= tau_k, e, 0.0)
        z = tl.sum(acc, axis=0)
        tl.store(z_ptr + row, z)
        p_first = tl.math.div_rn(1.0, z)  # the first candidate's probability: exp(m - m) / z
        min_p = tl.load(min_p_ptr + row)
        top_p = tl.load(top_p_ptr + row)
        # 1 is off: rounding may bring the mass to 1 early (an infinite bound keeps all but a row of NaN, which
        # is a row of -inf, whose threshold is -inf whatever is kept)
        top_p = tl.where(top_p >= 1.0, float("inf"), top_p)
        carry = 0.0
        for j0 in range(0, num_cand, CAND_BLOCK):
            js = j0 + offs_c
            inside = js < num_cand
            c, e = _scaled_exp(cand_row, js, inside, inv, m, LIBDEVICE_EXP)
            keep = inside & (c >= tau_k)
            p = tl.where(keep, tl.math.div_rn(e, z), 0.0)
            if NEED_MIN_P:
                keep = keep & (p >= min_p * p_first)
            if NEED_TOP_P:
                # A tile's scan carried from the one before; the mass before a position is its sum less its own p.
                mass = carry + tl.cumsum(p, axis=0)
                keep = keep & ((mass - p) < top_p)
                carry = tl.sum(tl.where(offs_c == CAND_BLOCK - 1, mass, 0.0), axis=0)
            count += tl.sum(keep.to(tl.int32), axis=0)
    else:
        for j0 in range(0, num_cand, CAND_BLOCK):
            js = j0 + offs_c
            inside = js < num_cand
            c = tl.math.div_rn(tl.load(cand_row + js, mask=inside, other=0.0).to(tl.float32), inv)
            count += tl.sum((inside & (c >= tau_k)).to(tl.int32), axis=0)
    # Each rule keeps a prefix of the sorted candidates, so the kept count is the prefix's length; at least the first.
    count = tl.maximum(count, 1)
    tl.store(count_ptr + row, count)
    tl.store(max_ptr + row, m)
    tl.store(tau_ptr + row, tl.math.div_rn(tl.load(cand_row + count - 1).to(tl.float32), inv))


def candidate_thresholds(logits: torch.Tensor, candidates: torch.Tensor, temperature: torch.Tensor,
                         top_k: torch.Tensor, top_p: torch.Tensor, min_p: torch.Tensor, need_top_p: bool,
                         need_min_p: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's filter threshold from its candidates: (tau, kept count, row max, exp sum), all [S].

    logits [S, V] (any float dtype); candidates [S, K] the rows' K largest logits in descending order (torch.topk's
    or a sort's values), K >= 1; temperature [S] float32 > 0; top_k [S] int (0 or >= V: off); top_p, min_p [S]
    float32. tau is the value at the end of the kept prefix of the scaled candidates c = candidates / temperature
    (IEEE division); the row max is c[:, 0]; the exp sum, Σ exp(x - max) over the scaled row's top-k set, is
    written only where need_top_p or need_min_p (else left unset). The kept count is what a top-p search past the
    candidates needs (all K kept), with the row max and the exp sum.
    """
    S, V = logits.shape
    K = candidates.shape[1]
    dev = logits.device
    tau = torch.empty(S, dtype=torch.float32, device=dev)
    count = torch.empty(S, dtype=torch.int32, device=dev)
    row_max = torch.empty(S, dtype=torch.float32, device=dev)
    z = torch.empty(S, dtype=torch.float32, device=dev)
    if S == 0:
        return tau, count, row_max, z
    assert K >= 1 and candidates.shape[0] == S
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    if candidates.stride(-1) != 1:
        candidates = candidates.contiguous()
    cuda = dev.type == "cuda"
    _candidate_thresholds_kernel[(S,)](
        logits, candidates, temperature.to(torch.float32).contiguous(), top_k.contiguous(),
        top_p.to(torch.float32).contiguous(), min_p.to(torch.float32).contiguous(), tau, count, row_max, z,
        V, K, logits.stride(0), candidates.stride(0),
        # On the CPU (the interpreter) narrower tiles: faster there, and they exercise the carries.
        BLOCK=CUDA_EXP_SUM_BLOCK if cuda else 256, CAND_BLOCK=CUDA_CUMSUM_BLOCK if cuda else 64,
        NEED_TOP_P=need_top_p, NEED_MIN_P=need_min_p, LIBDEVICE_EXP=cuda,
        num_warps=THRESHOLD_WARPS if cuda else 4, **pdl_args(dev),
    )
    return tau, count, row_max, z


def candidate_thresholds_ref(logits: torch.Tensor, candidates: torch.Tensor, temperature: torch.Tensor,
                             top_k: torch.Tensor, top_p: torch.Tensor, min_p: torch.Tensor, need_top_p: bool,
                             need_min_p: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plain-PyTorch :func:`candidate_thresholds`, step by step as the sampler computed it before the fusion (the
    sums by masked_exp_sum_ref and row_cumsum_ref: equal to the kernel's up to float32 rounding)."""
    V = logits.shape[1]
    c = candidates.float() / temperature.unsqueeze(1)
    kth = c.gather(1, (top_k.long().clamp(1, c.shape[1]) - 1).unsqueeze(1))
    tau_k = torch.where(((top_k > 0) & (top_k < V)).unsqueeze(1), kth, float("-inf"))
    keep = c >= tau_k
    m = c[:, :1]
    z = torch.empty(c.shape[0], dtype=torch.float32, device=c.device)
    if need_top_p or need_min_p:
        z = masked_exp_sum_ref(logits, temperature, tau_k.squeeze(1), m.squeeze(1))
        p = torch.where(keep, torch.exp(c - m) / z.unsqueeze(1), 0.0)
        if need_min_p:
            keep &= p >= min_p.unsqueeze(1) * p[:, :1]
        if need_top_p:
            before = row_cumsum_ref(p) - p
            keep &= (before < top_p.unsqueeze(1)) | (top_p >= 1.0).unsqueeze(1)
    count = keep.sum(dim=1, keepdim=True).clamp(min=1)
    tau = c.gather(1, count - 1).squeeze(1)
    return tau, count.squeeze(1).to(torch.int32), m.squeeze(1), z
