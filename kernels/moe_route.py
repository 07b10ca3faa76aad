"""MoE routing in one kernel: router logits -> top-k experts and their weights; at decode, the router product too.

Softmax or sigmoid scores, DeepSeek's group-limited choice (V2: a group's best score; V3: its two best, after the
correction bias) and correction bias, renormalized and scaled top-k weights. In PyTorch this was five to eight
launches a layer (softmax, topk's two kernels, gather, the sum and divisions): at decode batch 1 on an H200 they
took ~10 us a MoE layer one kernel at a time, more than this kernel's whole run (tests/gpu/run_moe_bs1_profile.sh).
Exact ties (frequent with bf16 logits) go to the lower expert index, here and in the reference (a stable sort where
torch.topk promises no order). Shared experts can follow as extra slots of every token (fused_moe's shared_w13 /
shared_w2), weighing 1 or, for Qwen2-MoE, sigmoid(x . gate): that dot is the routing program's, not a launch.

At up to ROUTER_MAX_TOKENS tokens (decode), moe_route_hidden also computes the router's logits from the hidden
states: the router weight split over many programs (a few KB each), whose fp32 partial sums the last to arrive adds
up and routes (split_counters.py), where F.linear took cuBLAS's two kernels (a dot and a reduce) ahead of the
routing kernel. Timed alone in CUDA graphs on an H200 (tests/gpu/time_moe_router.py, session 33), F.linear then
moe_route against one launch, at 1 / 8 / 16 tokens: Qwen1.5-MoE's router (60 x 2048) 6.1 / 8.4 / 8.4 us against
4.4-4.6 / 4.1 / 5.5, Qwen3-30B-A3B's (128 x 2048) 7.6 / 8.1 / 7.7 against 6.6-7.1 / 6.1 / 7.6. Routing alone takes
1.4-2.2 us: the semaphore and the last program cost ~3-4. DeepSeek's fp32 routers (x widened here, where F.linear
needs a copy of it) stream ~1.2 us a step of their fp32 tiles, so they split H up to 16 ways: DeepSeek-V2-Lite's
(64 x 2048) 8.6 / 12.1 / 12.6 against 7.0 / 7.2 / 7.4 at 16 splits (8.9 / 9.0 / 9.2 at 8). Group-limited routers stay
on F.linear (the layer's choice): the last program routes a row's groups one after another, DeepSeek-V3's shape in
bf16 11.8 / 19.0 / 40.2 us against ~10 (its fp32 router 53-69 against 12-25).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .pdl import pdl_args, pdl_enter
from .split_counters import arrive_with_partial_sums, split_counters

# SPMD_MOE_ROUTE_KERNEL=0 routes on the GPU through moe_route_ref's PyTorch ops instead (A/B runs).
ROUTE_KERNEL = os.environ.get("SPMD_MOE_ROUTE_KERNEL", "1") != "0"
# SPMD_MOE_ROUTER_FUSED=0 keeps the router's product in F.linear at decode too (A/B runs).
ROUTER_FUSED = os.environ.get("SPMD_MOE_ROUTER_FUSED", "1") != "0"
# Tokens moe_route_hidden takes: the router product's tensor-core tile pads the batch to 16 rows.
ROUTER_MAX_TOKENS = 16
# Router weight programs a launch aims at (small tiles: the weight streams from many SMs at once), and at most this
# many splits of the hidden features, whose partial sums the last program loads all at once.
_ROUTER_PROGRAMS = 64
_ROUTER_MAX_SPLITS = 8
_ROUTER_MAX_SPLITS_FP32 = 16


@triton.jit
def _first_max(values, index, available, NONE: tl.constexpr):
    """Per row of `values` [R, C]: the largest where `available`, and the lowest `index` that holds it ([R] each)."""
    candidates = tl.where(available, values, float("-inf"))
    best = tl.max(candidates, axis=1)
    return best, tl.min(tl.where(available & (candidates == best[:, None]), index, NONE), axis=1)


@triton.jit
def sigmoid_gate_rows(x_ptr, stride_xt, rows, row_mask, gate_ptr, hidden, BLOCK_T: tl.constexpr,
                      BLOCK_H: tl.constexpr):
    """sigmoid(x[t] . gate) of the rows `rows` [BLOCK_T] (Qwen2-MoE's shared expert gate), in fp32, BLOCK_H features
    at a time: the weight of moe_route's shared slots, and (a one-row tile) of fused_moe's `add_gate`."""
    dot = tl.zeros([BLOCK_T, BLOCK_H], dtype=tl.float32)
    for h0 in range(0, hidden, BLOCK_H):
        h = h0 + tl.arange(0, BLOCK_H)
        xs = tl.load(x_ptr + rows[:, None] * stride_xt + h[None, :], mask=row_mask[:, None] & (h < hidden)[None, :],
                     other=0.0).to(tl.float32)
        dot += xs * tl.load(gate_ptr + h, mask=h < hidden, other=0.0).to(tl.float32)[None, :]
    return tl.sigmoid(tl.sum(dot, axis=1))


def sigmoid_gate_ref(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """sigmoid(x . gate) per row [T], in fp32: :func:`sigmoid_gate_rows`'s reference."""
    return torch.sigmoid(x.float() @ gate.float())


@triton.jit
def _route_rows(logits, bias_ptr, num_experts, group_size, scaling, renorm_eps, TOP_K: tl.constexpr,
                SIGMOID: tl.constexpr, HAS_BIAS: tl.constexpr, RENORMALIZE: tl.constexpr, NUM_GROUPS: tl.constexpr,
                TOPK_GROUPS: tl.constexpr, GROUP_TOP2: tl.constexpr, WEIGHTS_FROM_CHOICE: tl.constexpr,
                BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_K: tl.constexpr):
    """Logits [BLOCK_T, BLOCK_E] fp32 (-inf past num_experts) -> (weights fp32, ids int64), [BLOCK_T, BLOCK_K] each:
    every row routed on its own (moe_route's rules), the best first, slots past TOP_K unset."""
    experts = tl.arange(0, BLOCK_E)
    real = experts < num_experts
    if SIGMOID:
        scores = tl.sigmoid(logits)
    else:
        p = tl.exp(logits - tl.max(logits, axis=1)[:, None])  # the padding's -inf gives 0
        scores = p / tl.sum(p, axis=1)[:, None]
    choice = scores
    if HAS_BIAS:  # DeepSeek-V3's correction bias: it steers the choice, not the weights
        choice = choice + tl.load(bias_ptr + experts, mask=real, other=0.0)[None, :]
    if NUM_GROUPS > 1:  # keep the TOPK_GROUPS best groups of group_size experts
        group = experts // group_size
        groups = tl.arange(0, BLOCK_G)
        group_scores = tl.full([BLOCK_T, BLOCK_G], float("-inf"), tl.float32)
        for g in tl.static_range(NUM_GROUPS):
            member = (real & (group == g))[None, :]
            top, at = _first_max(choice, experts[None, :], member, BLOCK_E)
            if GROUP_TOP2:
                second, _ = _first_max(choice, experts[None, :], member & (experts[None, :] != at[:, None]),
                                       BLOCK_E)
                top = top + second
            group_scores = tl.where(groups[None, :] == g, top[:, None], group_scores)
        kept = tl.zeros([BLOCK_T, BLOCK_E], tl.int32)
        for _ in tl.static_range(TOPK_GROUPS):
            _, g_at = _first_max(group_scores, groups[None, :], (groups < NUM_GROUPS)[None, :], BLOCK_G)
            kept = tl.where(group[None, :] == g_at[:, None], 1, kept)
            group_scores = tl.where(groups[None, :] == g_at[:, None], float("-inf"), group_scores)
        # Dropped groups' experts score 0 (V2's softmax scores) or -inf (V3's biased sigmoid), as in transformers.
        if GROUP_TOP2:
            choice = tl.where(kept != 0, choice, float("-inf"))
        else:
            choice = tl.where(kept != 0, choice, 0.0)
    slots = tl.arange(0, BLOCK_K)[None, :]
    weights = tl.zeros([BLOCK_T, BLOCK_K], tl.float32)  # (slots past TOP_K stay 0)
    ids = tl.zeros([BLOCK_T, BLOCK_K], tl.int64)
    available = real[None, :] & (tl.zeros([BLOCK_T, 1], tl.int32) == 0)
    for j in tl.static_range(TOP_K):
        best, at = _first_max(choice, experts[None, :], available, BLOCK_E)
        picked = experts[None, :] == at[:, None]
        if WEIGHTS_FROM_CHOICE:  # the chosen value itself, as torch.topk's values (V2's dropped experts weigh 0)
            weight = best
        else:  # the chosen expert's score (the choice held a bias or a group's -inf)
            weight = tl.sum(tl.where(picked, scores, 0.0), axis=1)
        weights = tl.where(slots == j, weight[:, None], weights)
        ids = tl.where(slots == j, at[:, None].to(tl.int64), ids)
        available = available & ~picked
    if RENORMALIZE:
        weights = weights / (tl.sum(weights, axis=1)[:, None] + renorm_eps)
    return weights * scaling, ids


@triton.jit
def _store_routes(weights_ptr, ids_ptr, rows, row_mask, weights, ids, x_ptr, stride_xt, gate_ptr, num_experts,
                  hidden, TOP_K: tl.constexpr, NUM_SHARED: tl.constexpr, SHARED_GATE: tl.constexpr,
                  BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_H: tl.constexpr):
    """The rows' routed slots, then NUM_SHARED shared slots (ids num_experts + s, unscaled by the routing's
    scaling), weighing 1 or sigmoid(x[t] . gate)."""
    out_k = TOP_K + NUM_SHARED
    slots = tl.arange(0, BLOCK_K)[None, :]
    at = rows[:, None].to(tl.int64) * out_k + slots
    routed = row_mask[:, None] & (slots < TOP_K)
    tl.store(weights_ptr + at, weights, mask=routed)
    tl.store(ids_ptr + at, ids, mask=routed)
    if NUM_SHARED > 0:  # after the routed slots
        shared = tl.arange(0, BLOCK_S)[None, :]
        weight = tl.full([BLOCK_T], 1.0, tl.float32)
        if SHARED_GATE:
            weight = sigmoid_gate_rows(x_ptr, stride_xt, rows, row_mask, gate_ptr, hidden, BLOCK_T, BLOCK_H)
        at = rows[:, None].to(tl.int64) * out_k + TOP_K + shared
        mask = row_mask[:, None] & (shared < NUM_SHARED)
        tl.store(weights_ptr + at, tl.zeros([BLOCK_T, BLOCK_S], tl.float32) + weight[:, None], mask=mask)
        tl.store(ids_ptr + at, (num_experts + shared + tl.zeros([BLOCK_T, 1], tl.int32)).to(tl.int64), mask=mask)


@triton.jit(do_not_specialize=["T"])  # the batch changes every step
def _moe_route_kernel(logits_ptr, bias_ptr, weights_ptr, ids_ptr, x_ptr, gate_ptr, T, stride_t, stride_xt,
                      num_experts, group_size, scaling, renorm_eps, hidden, TOP_K: tl.constexpr,
                      SIGMOID: tl.constexpr, HAS_BIAS: tl.constexpr, RENORMALIZE: tl.constexpr,
                      NUM_GROUPS: tl.constexpr, TOPK_GROUPS: tl.constexpr, GROUP_TOP2: tl.constexpr,
                      WEIGHTS_FROM_CHOICE: tl.constexpr, NUM_SHARED: tl.constexpr, SHARED_GATE: tl.constexpr,
                      BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_K: tl.constexpr,
                      BLOCK_S: tl.constexpr, BLOCK_H: tl.constexpr, PDL: tl.constexpr):
    """BLOCK_T tokens a program, from their logits."""
    pdl_enter(PDL)
    rows = tl.program_id(0).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)
    row_mask = rows < T
    experts = tl.arange(0, BLOCK_E)
    logits = tl.load(logits_ptr + rows[:, None] * stride_t + experts[None, :],
                     mask=row_mask[:, None] & (experts < num_experts)[None, :], other=float("-inf")).to(tl.float32)
    weights, ids = _route_rows(logits, bias_ptr, num_experts, group_size, scaling, renorm_eps, TOP_K, SIGMOID,
                               HAS_BIAS, RENORMALIZE, NUM_GROUPS, TOPK_GROUPS, GROUP_TOP2, WEIGHTS_FROM_CHOICE,
                               BLOCK_T, BLOCK_E, BLOCK_G, BLOCK_K)
    _store_routes(weights_ptr, ids_ptr, rows, row_mask, weights, ids, x_ptr, stride_xt, gate_ptr, num_experts,
                  hidden, TOP_K, NUM_SHARED, SHARED_GATE, BLOCK_T, BLOCK_K, BLOCK_S, BLOCK_H)


@triton.jit
def _router_dot(x, w, acc, IEEE: tl.constexpr):
    if IEEE:  # an fp32 router (DeepSeek's): x widened, exact products (not TF32's 10-bit mantissas)
        acc = tl.dot(x.to(tl.float32), w, acc, input_precision="ieee")
    else:
        acc = tl.dot(x, w, acc)
    return acc


@triton.jit(do_not_specialize=["T"])
def _moe_router_kernel(x_ptr, w_ptr, part_ptr, count_ptr, bias_ptr, weights_ptr, ids_ptr, gate_ptr, T, stride_xt,
                       num_experts, hidden, k_steps, steps_per_split, group_size, scaling, renorm_eps,
                       ROUND_LOGITS: tl.constexpr, IEEE: tl.constexpr, SPLITS: tl.constexpr, TOP_K: tl.constexpr,
                       SIGMOID: tl.constexpr, HAS_BIAS: tl.constexpr, RENORMALIZE: tl.constexpr,
                       NUM_GROUPS: tl.constexpr, TOPK_GROUPS: tl.constexpr, GROUP_TOP2: tl.constexpr,
                       WEIGHTS_FROM_CHOICE: tl.constexpr, NUM_SHARED: tl.constexpr, SHARED_GATE: tl.constexpr,
                       BLOCK_T: tl.constexpr, ROUTE_ROWS: tl.constexpr, BLOCK_N: tl.constexpr,
                       BLOCK_HK: tl.constexpr, BLOCK_E: tl.constexpr,
                       BLOCK_G: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_H: tl.constexpr,
                       PDL: tl.constexpr):
    """Program (n, split): logits of experts n * BLOCK_N ... for every token over its share of the hidden features,
    stored as fp32 partial sums [SPLITS, BLOCK_T, BLOCK_E]; the last of the launch's programs to arrive adds them up
    in split order, rounds them as the router's own product would, routes every token and resets the counter."""
    n_tile = tl.program_id(0) // SPLITS
    split = tl.program_id(0) % SPLITS
    rows = tl.arange(0, BLOCK_T)
    row_mask = rows < T
    experts = n_tile * BLOCK_N + tl.arange(0, BLOCK_N)
    expert_mask = experts < num_experts
    feats = split * steps_per_split * BLOCK_HK + tl.arange(0, BLOCK_HK)
    w_ptrs = w_ptr + experts[None, :].to(tl.int64) * hidden + feats[:, None]  # [BLOCK_HK, BLOCK_N]
    x_ptrs = x_ptr + rows[:, None] * stride_xt + feats[None, :]
    # The weight's first tile fetched before the wait: no kernel before this one writes it (pdl.py). Peeled, as in
    # skinny_gemm, so that the loop stays plain; every split has at least one step (the wrapper sizes them).
    w = tl.load(w_ptrs, mask=expert_mask[None, :] & (feats < hidden)[:, None], other=0.0)
    pdl_enter(PDL)
    acc = _router_dot(tl.load(x_ptrs, mask=row_mask[:, None] & (feats < hidden)[None, :], other=0.0), w,
                      tl.zeros([BLOCK_T, BLOCK_N], tl.float32), IEEE)
    for _ in range(split * steps_per_split + 1, tl.minimum(k_steps, (split + 1) * steps_per_split)):
        feats += BLOCK_HK
        w_ptrs += BLOCK_HK
        x_ptrs += BLOCK_HK
        w = tl.load(w_ptrs, mask=expert_mask[None, :] & (feats < hidden)[:, None], other=0.0)
        x = tl.load(x_ptrs, mask=row_mask[:, None] & (feats < hidden)[None, :], other=0.0)
        acc = _router_dot(x, w, acc, IEEE)
    tile = rows[:, None] * BLOCK_E + experts[None, :]
    arrived = arrive_with_partial_sums(part_ptr + split * BLOCK_T * BLOCK_E + tile, acc,
                                       row_mask[:, None] & expert_mask[None, :], count_ptr)
    if arrived != tl.num_programs(0) - 1:
        return
    # The last program: every split's partial logits of the first ROUTE_ROWS rows, loads unrolled (issued together),
    # added in split order. Routing costs about a row's work per row: with DeepSeek-V3's groups in bf16 (H200,
    # tests/gpu/time_moe_router.py) 11.8 / 19.0 / 40.2 us at 1 / 8 / 16 tokens routing T's power of two rows, 39.6 at
    # each routing all 16. At least a row per warp (4): Qwen3-30B-A3B's router at one token took 7.1 us routing one
    # row (each reduction across the warps), 6.6 routing 16.
    rows = tl.arange(0, ROUTE_ROWS)
    row_mask = rows < T
    every = tl.arange(0, BLOCK_E)
    logits_mask = row_mask[:, None] & (every < num_experts)[None, :]
    logits = tl.zeros([ROUTE_ROWS, BLOCK_E], tl.float32)
    for j in tl.static_range(SPLITS):
        logits += tl.load(part_ptr + j * BLOCK_T * BLOCK_E + rows[:, None] * BLOCK_E + every[None, :],
                          mask=logits_mask, other=0.0, cache_modifier=".cg")
    tl.store(count_ptr, 0)  # for the next launch (a CUDA graph replays this one)
    if ROUND_LOGITS:  # a 16-bit router's logits, as F.linear returns them
        logits = logits.to(x_ptr.dtype.element_ty).to(tl.float32)
    # -inf past the experts; rows past T (never stored) stay finite, so their softmax holds no NaN.
    logits = tl.where((every < num_experts)[None, :], logits, float("-inf"))
    weights, ids = _route_rows(logits, bias_ptr, num_experts, group_size, scaling, renorm_eps, TOP_K, SIGMOID,
                               HAS_BIAS, RENORMALIZE, NUM_GROUPS, TOPK_GROUPS, GROUP_TOP2, WEIGHTS_FROM_CHOICE,
                               ROUTE_ROWS, BLOCK_E, BLOCK_G, BLOCK_K)
    _store_routes(weights_ptr, ids_ptr, rows, row_mask, weights, ids, x_ptr, stride_xt, gate_ptr, num_experts,
                  hidden, TOP_K, NUM_SHARED, SHARED_GATE, ROUTE_ROWS, BLOCK_K, BLOCK_S, BLOCK_H)


@dataclass
class _RoutingLaunch:
    """What moe_route's and moe_route_hidden's kernels share: the outputs, the routing's pointers and scalars, and
    its constexprs."""
    weights: torch.Tensor  # float32 [T, top_k + num_shared]
    ids: torch.Tensor  # int64 [T, top_k + num_shared]
    bias: torch.Tensor  # (the logits or x where there is none: unread)
    gate_x: torch.Tensor  # the shared gate's rows (likewise)
    gate: torch.Tensor
    group_size: int
    renorm_eps: float
    gate_hidden: int
    constexprs: dict


def _routing_launch(T: int, E: int, top_k: int, sigmoid: bool, bias: torch.Tensor | None, renormalize: bool,
                    num_groups: int, topk_groups: int, group_top2: bool, num_shared: int,
                    shared_gate: tuple[torch.Tensor, torch.Tensor] | None, like: torch.Tensor) -> _RoutingLaunch:
    assert 1 <= top_k <= E and E % num_groups == 0 and topk_groups <= num_groups
    x, gate = shared_gate if shared_gate is not None else (like, like)  # (unread without SHARED_GATE)
    assert shared_gate is None or (num_shared > 0 and x.shape == (T, gate.shape[0]) and x.stride(-1) == 1
                                   and gate.stride(-1) == 1)
    hidden = gate.shape[0] if shared_gate is not None else 1
    constexprs = dict(
        TOP_K=top_k, SIGMOID=sigmoid, HAS_BIAS=bias is not None, RENORMALIZE=renormalize, NUM_GROUPS=num_groups,
        TOPK_GROUPS=topk_groups, GROUP_TOP2=group_top2, WEIGHTS_FROM_CHOICE=bias is None and not group_top2,
        NUM_SHARED=num_shared, SHARED_GATE=shared_gate is not None, BLOCK_E=triton.next_power_of_2(E),
        BLOCK_G=triton.next_power_of_2(num_groups), BLOCK_K=triton.next_power_of_2(top_k),
        BLOCK_S=triton.next_power_of_2(max(num_shared, 1)), BLOCK_H=min(triton.next_power_of_2(hidden), 1024),
        **pdl_args(like.device))
    return _RoutingLaunch(
        weights=torch.empty((T, top_k + num_shared), dtype=torch.float32, device=like.device),
        ids=torch.empty((T, top_k + num_shared), dtype=torch.int64, device=like.device),
        bias=bias if bias is not None else like, gate_x=x, gate=gate, group_size=E // num_groups,
        renorm_eps=1e-20 if bias is not None else 0.0, gate_hidden=hidden, constexprs=constexprs)


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
    assert logits.stride(-1) == 1
    r = _routing_launch(T, E, top_k, sigmoid, bias, renormalize, num_groups, topk_groups, group_top2, num_shared,
                        shared_gate, logits)
    if T > 0:
        _moe_route_kernel[(T,)](logits, r.bias, r.weights, r.ids, r.gate_x, r.gate, T, logits.stride(0),
                                r.gate_x.stride(0), E, r.group_size, float(scaling), r.renorm_eps, r.gate_hidden,
                                BLOCK_T=1, num_warps=1, **r.constexprs)
    return r.weights, r.ids


def router_fits(x: torch.Tensor, router_weight: torch.Tensor) -> bool:
    """Whether moe_route_hidden takes this router product: x [T <= ROUTER_MAX_TOKENS, H] with contiguous features,
    the weight [E, H] contiguous, in x's dtype or fp32 (DeepSeek's router over 16-bit states)."""
    return (x.dim() == 2 and x.shape[0] <= ROUTER_MAX_TOKENS and x.stride(-1) == 1
            and router_weight.shape[1] == x.shape[1] and router_weight.is_contiguous()
            and router_weight.dtype in (x.dtype, torch.float32))


def moe_route_hidden(x: torch.Tensor, router_weight: torch.Tensor, top_k: int, sigmoid: bool = False,
                     bias: torch.Tensor | None = None, renormalize: bool = False, num_groups: int = 1,
                     topk_groups: int = 1, group_top2: bool = False, scaling: float = 1.0, num_shared: int = 0,
                     shared_gate: tuple[torch.Tensor, torch.Tensor] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`moe_route` of the router's logits x [T, H] @ router_weight [E, H]^T, computed in the same launch, for
    up to ROUTER_MAX_TOKENS tokens (router_fits). A 16-bit router's logits are rounded to its dtype, as F.linear
    returns them; an fp32 router takes x widened to fp32, exact products. A `shared_gate`'s rows must be x. No host
    sync: CUDA-graph safe after a first call outside a capture (split_counters)."""
    T, H = x.shape
    E = router_weight.shape[0]
    if not router_fits(x, router_weight):
        raise ValueError(f"moe_route_hidden takes at most {ROUTER_MAX_TOKENS} rows, contiguous features, and a "
                         f"router weight [E, H] in x's dtype or fp32; got x {tuple(x.shape)} {x.dtype}, weight "
                         f"{tuple(router_weight.shape)} {router_weight.dtype}: use moe_route on F.linear's logits")
    assert shared_gate is None or shared_gate[0] is x, "the shared gate's rows are the router's input"
    r = _routing_launch(T, E, top_k, sigmoid, bias, renormalize, num_groups, topk_groups, group_top2, num_shared,
                        shared_gate, x)
    if T == 0:
        return r.weights, r.ids
    fp32 = router_weight.dtype == torch.float32
    block_hk = 64 if fp32 else 128  # (shared memory: fp32 tiles are twice the bytes)
    block_n = 16
    n_tiles = triton.cdiv(E, block_n)
    k_steps = triton.cdiv(H, block_hk)
    max_splits = _ROUTER_MAX_SPLITS_FP32 if fp32 else _ROUTER_MAX_SPLITS
    splits = max(1, min(k_steps, max_splits, _ROUTER_PROGRAMS // n_tiles))
    steps_per_split = triton.cdiv(k_steps, splits)
    splits = triton.cdiv(k_steps, steps_per_split)  # every split has features
    part = torch.empty((splits, ROUTER_MAX_TOKENS, r.constexprs["BLOCK_E"]), dtype=torch.float32, device=x.device)
    constexprs = {**r.constexprs, "BLOCK_H": min(r.constexprs["BLOCK_H"], 256)}  # (the gate's [rows, BLOCK_H] tile)
    _moe_router_kernel[(n_tiles * splits,)](
        x, router_weight, part, split_counters(x.device), r.bias, r.weights, r.ids, r.gate, T, x.stride(0), E, H,
        k_steps, steps_per_split, r.group_size, float(scaling), r.renorm_eps, ROUND_LOGITS=not fp32, IEEE=fp32,
        SPLITS=splits, BLOCK_T=ROUTER_MAX_TOKENS, ROUTE_ROWS=max(triton.next_power_of_2(T), 4), BLOCK_N=block_n,
        BLOCK_HK=block_hk, num_warps=4, **constexprs)
    return r.weights, r.ids


def moe_route_hidden_ref(x: torch.Tensor, router_weight: torch.Tensor, top_k: int, **routing
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-PyTorch :func:`moe_route_hidden`: F.linear's logits (on x widened for an fp32 router), then
    :func:`moe_route_ref`."""
    logits = F.linear(x.float() if router_weight.dtype == torch.float32 else x, router_weight)
    return moe_route_ref(logits, top_k, **routing)


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
