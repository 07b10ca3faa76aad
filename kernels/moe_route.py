"""MoE routing in one kernel, a program a token: router logits -> top-k experts and their weights.

Softmax or sigmoid scores, DeepSeek's group-limited choice (V2: a group's best score; V3: its two best, after the
correction bias) and correction bias, renormalized and scaled top-k weights. In PyTorch this was five to eight
launches a layer (softmax, topk's two kernels, gather, the sum and divisions): at decode batch 1 on an H200 they
took ~10 us a MoE layer one kernel at a time, more than this kernel's whole run (tests/gpu/run_moe_bs1_profile.sh).
Exact ties (frequent with bf16 logits) go to the lower expert index, here and in the reference (a stable sort where
torch.topk promises no order). Shared experts can follow as extra slots of every token (fused_moe's shared_w13 /
shared_w2), weighing 1 or, for Qwen2-MoE, sigmoid(x . gate): that dot is the token's program's, not a launch.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .pdl import pdl_args, pdl_enter

# SPMD_MOE_ROUTE_KERNEL=0 routes on the GPU through moe_route_ref's PyTorch ops instead (A/B runs).
ROUTE_KERNEL = os.environ.get("SPMD_MOE_ROUTE_KERNEL", "1") != "0"


@triton.jit
def _first_max(values, index, available, NONE: tl.constexpr):
    """The largest of `values` where `available`, and the lowest `index` that holds it."""
    candidates = tl.where(available, values, float("-inf"))
    best = tl.max(candidates, axis=0)
    return best, tl.min(tl.where(available & (candidates == best), index, NONE), axis=0)


@triton.jit
def sigmoid_gate(x_row_ptr, gate_ptr, hidden, BLOCK_H: tl.constexpr):
    """sigmoid(x . gate) of one row (Qwen2-MoE's shared expert gate), in fp32, BLOCK_H features at a time: its
    weight in moe_route's shared slots and in fused_moe's `add_gate`."""
    dot = tl.zeros([BLOCK_H], dtype=tl.float32)
    for h0 in range(0, hidden, BLOCK_H):
        h = h0 + tl.arange(0, BLOCK_H)
        xs = tl.load(x_row_ptr + h, mask=h < hidden, other=0.0).to(tl.float32)
        dot += xs * tl.load(gate_ptr + h, mask=h < hidden, other=0.0).to(tl.float32)
    return tl.sigmoid(tl.sum(dot, axis=0))


def sigmoid_gate_ref(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """sigmoid(x . gate) per row [T], in fp32: :func:`sigmoid_gate`'s reference."""
    return torch.sigmoid(x.float() @ gate.float())


@triton.jit
def _moe_route_kernel(logits_ptr, bias_ptr, weights_ptr, ids_ptr, x_ptr, gate_ptr, stride_t, stride_xt, num_experts,
                      group_size, scaling, renorm_eps, hidden, TOP_K: tl.constexpr, SIGMOID: tl.constexpr,
                      HAS_BIAS: tl.constexpr, RENORMALIZE: tl.constexpr, NUM_GROUPS: tl.constexpr,
                      TOPK_GROUPS: tl.constexpr, GROUP_TOP2: tl.constexpr, WEIGHTS_FROM_CHOICE: tl.constexpr,
                      NUM_SHARED: tl.constexpr, SHARED_GATE: tl.constexpr, BLOCK_E: tl.constexpr,
                      BLOCK_G: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_H: tl.constexpr,
                      PDL: tl.constexpr):
    pdl_enter(PDL)
    t = tl.program_id(0).to(tl.int64)
    experts = tl.arange(0, BLOCK_E)
    real = experts < num_experts
    x = tl.load(logits_ptr + t * stride_t + experts, mask=real, other=float("-inf")).to(tl.float32)
    if SIGMOID:
        scores = tl.sigmoid(x)
    else:
        p = tl.exp(x - tl.max(x, axis=0))  # the padding's -inf gives 0
        scores = p / tl.sum(p, axis=0)
    choice = scores
    if HAS_BIAS:  # DeepSeek-V3's correction bias: it steers the choice, not the weights
        choice = choice + tl.load(bias_ptr + experts, mask=real, other=0.0)
    if NUM_GROUPS > 1:  # keep the TOPK_GROUPS best groups of group_size experts
        group = experts // group_size
        groups = tl.arange(0, BLOCK_G)
        group_scores = tl.full([BLOCK_G], float("-inf"), tl.float32)
        for g in tl.static_range(NUM_GROUPS):
            member = real & (group == g)
            top, at = _first_max(choice, experts, member, BLOCK_E)
            if GROUP_TOP2:
                second, _ = _first_max(choice, experts, member & (experts != at), BLOCK_E)
                top = top + second
            group_scores = tl.where(groups == g, top, group_scores)
        kept = tl.zeros([BLOCK_E], tl.int32)
        for _ in tl.static_range(TOPK_GROUPS):
            _, g_at = _first_max(group_scores, groups, groups < NUM_GROUPS, BLOCK_G)
            kept = tl.where(group == g_at, 1, kept)
            group_scores = tl.where(groups == g_at, float("-inf"), group_scores)
        # Dropped groups' experts score 0 (V2's softmax scores) or -inf (V3's biased sigmoid), as in transformers.
        if GROUP_TOP2:
            choice = tl.where(kept != 0, choice, float("-inf"))
        else:
            choice = tl.where(kept != 0, choice, 0.0)
    if WEIGHTS_FROM_CHOICE:  # (as torch.topk's values: V2's dropped experts weigh 0 should one be chosen)
        source = choice
    else:
        source = scores
    slots = tl.arange(0, BLOCK_K)
    weights = tl.zeros([BLOCK_K], tl.float32)
    ids = tl.zeros([BLOCK_K], tl.int64)
    available = real
    for j in tl.static_range(TOP_K):
        _, at = _first_max(choice, experts, available, BLOCK_E)
        picked = experts == at
        weight = tl.sum(tl.where(picked, source, 0.0), axis=0)
        weights = tl.where(slots == j, weight, weights)
        ids = tl.where(slots == j, at.to(tl.int64), ids)
        available = available & (experts != at)
    if RENORMALIZE:
        weights = weights / (tl.sum(weights, axis=0) + renorm_eps)
    out_k = TOP_K + NUM_SHARED
    tl.store(weights_ptr + t * out_k + slots, weights * scaling, mask=slots < TOP_K)
    tl.store(ids_ptr + t * out_k + slots, ids, mask=slots < TOP_K)
    if NUM_SHARED > 0:  # after the routed slots: ids num_experts + s, unscaled by `scaling`
        shared = tl.arange(0, BLOCK_S)
        weight = 1.0
        if SHARED_GATE:
            weight = sigmoid_gate(x_ptr + t * stride_xt, gate_ptr, hidden, BLOCK_H)
        tl.store(weights_ptr + t * out_k + TOP_K + shared, tl.zeros([BLOCK_S], tl.float32) + weight,
                 mask=shared < NUM_SHARED)
        tl.store(ids_ptr + t * out_k + TOP_K + shared, (num_experts + shared).to(tl.int64), mask=shared < NUM_SHARED)


def moe_route(logits: torch.Tensor, top_k: int, sigmoid: bool = False, bias: torch.Tensor | None = None,
              renormalize: bool = False, num_groups: int = 1, topk_groups: int = 1, group_top2: bool = False,
              scaling: float = 1.0, num_shared: int = 0, shared_gate: tuple[torch.Tensor, torch.Tensor] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Router logits [T, E] (any float dtype) -> (weights float32 [T, top_k], expert ids int64 [T, top_k]), the
    best first. Scores: softmax over the experts, or `sigmoid`. `bias` (float32 [E], DeepSeek-V3's correction
    bias) is added for the choice only. With `num_groups` > 1 only the experts of the `topk_groups` best groups
    (E / num_groups consecutive experts each) are chosen, a group scored by its best choice score, or by its two
    best (`group_top2`). `renormalize`: the weights divided by their sum; then all multiplied by `scaling`.
    `num_shared` > 0: that many shared-expert slots follow the routed ones ([T, top_k + num_shared]), ids E ... E +
    num_shared - 1, weighing 1, or sigmoid(x[t] . gate) where `shared_gate` = (x [T, H], gate [H]) is given
    (Qwen2-MoE's shared expert gate). No host sync (CUDA-graph safe)."""
    T, E = logits.shape
    assert logits.stride(-1) == 1 and 1 <= top_k <= E and E % num_groups == 0 and topk_groups <= num_groups
    x, gate = shared_gate if shared_gate is not None else (logits, logits)  # (unread without SHARED_GATE)
    assert shared_gate is None or (num_shared > 0 and x.shape == (T, gate.shape[0]) and x.stride(-1) == 1
                                   and gate.stride(-1) == 1)
    weights = torch.empty((T, top_k + num_shared), dtype=torch.float32, device=logits.device)
    ids = torch.empty((T, top_k + num_shared), dtype=torch.int64, device=logits.device)
    if T == 0:
        return weights, ids
    hidden = gate.shape[0] if shared_gate is not None else 1
    _moe_route_kernel[(T,)](
        logits, bias if bias is not None else logits, weights, ids, x, gate, logits.stride(0), x.stride(0), E,
        E // num_groups, float(scaling), 1e-20 if bias is not None else 0.0, hidden,
        TOP_K=top_k, SIGMOID=sigmoid, HAS_BIAS=bias is not None, RENORMALIZE=renormalize, NUM_GROUPS=num_groups,
        TOPK_GROUPS=topk_groups, GROUP_TOP2=group_top2, WEIGHTS_FROM_CHOICE=bias is None and not group_top2,
        NUM_SHARED=num_shared, SHARED_GATE=shared_gate is not None, BLOCK_E=triton.next_power_of_2(E),
        BLOCK_G=triton.next_power_of_2(num_groups), BLOCK_K=triton.next_power_of_2(top_k),
        BLOCK_S=triton.next_power_of_2(max(num_shared, 1)), BLOCK_H=min(triton.next_power_of_2(hidden), 1024),
        num_warps=1, **pdl_args(logits.device),
    )
    return weights, ids


def moe_route_ref(logits: torch.Tensor, top_k: int, sigmoid: bool = False, bias: torch.Tensor | None = None,
                  renormalize: bool = False, num_groups: int = 1, topk_groups: int = 1, group_top2: bool = False,
                  scaling: float = 1.0, num_shared: int = 0,
                  shared_gate: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-PyTorch :func:`moe_route` (transformers' routers, step for step: tests/test_deepseek.py; their
    torch.topk, as a stable sort, breaks ties toward the lower index as the kernel does)."""
    scores = logits.float().sigmoid() if sigmoid else logits.float().softmax(dim=-1)
    choice = scores + bias if bias is not None else scores
    if num_groups > 1:
        t, e = choice.shape
        grouped = choice.view(t, num_groups, e // num_groups)
        group_scores = grouped.topk(2, dim=-1)[0].sum(-1) if group_top2 else grouped.max(dim=-1).values
        keep = torch.zeros_like(group_scores).scatter_(1, _top(group_scores, topk_groups)[1], 1.0)
        keep = keep.unsqueeze(-1).expand_as(grouped).reshape(t, e).bool()
        # Softmax scores of dropped groups become 0 (V2); biased sigmoid scores -inf (V3), as in transformers.
        choice = choice.masked_fill(~keep, float("-inf") if group_top2 else 0.0)
    if bias is None and not group_top2:
        weights, ids = _top(choice, top_k)
    else:
        ids = _top(choice, top_k)[1]
        weights = scores.gather(1, ids)
    if renormalize:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + (1e-20 if bias is not None else 0.0))
    weights = weights * scaling
    if num_shared:
        t, e = logits.shape
        shared_ids = torch.arange(e, e + num_shared, device=logits.device).expand(t, num_shared)
        if shared_gate is None:
            shared_weights = torch.ones(t, num_shared, device=logits.device)
        else:
            shared_weights = sigmoid_gate_ref(*shared_gate)[:, None].expand(t, num_shared)
        weights, ids = torch.cat([weights, shared_weights], 1), torch.cat([ids, shared_ids], 1)
    return weights, ids


def _top(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.topk over the last dimension, equal values in index order."""
    ordered, order = values.sort(dim=-1, descending=True, stable=True)
    return ordered[..., :k], order[..., :k]
