"""Mixture-of-experts: top-k routing (softmax, group-limited, sigmoid + correction bias) and sharded experts.

Experts are split over the MLP shard either whole (ep: each rank owns num_experts/n experts and reads
only those from disk) or by intermediate size (tp: every rank holds a slice of every expert). Every
rank routes all tokens identically (the router is replicated) and adds up its local experts'
contributions; the partial sums are reduced over the shard afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spmd_kernels import fused_moe

from ..parallel.comm import Shard, all_reduce
from .activation import silu_and_mul
from .weights import CheckpointTensor, copy_checked


@dataclass(frozen=True)
class RoutingConfig:
    top_k: int
    scoring: str = "softmax"  # softmax | sigmoid
    renormalize: bool = False  # divide the top-k weights by their sum (norm_topk_prob)
    num_groups: int = 1  # group-limited routing: pick topk_groups groups first
    topk_groups: int = 1
    group_score: str = "max"  # max (DeepSeek-V2) | top2_sum (DeepSeek-V3 noaux_tc)
    scaling: float = 1.0  # routed_scaling_factor
    correction_bias: bool = False  # DeepSeek-V3's e_score_correction_bias, used for choice only
    float32_router: bool = False  # router matmul in float32 (DeepSeek) rather than the activation dtype


def route(logits: torch.Tensor, cfg: RoutingConfig, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Router logits [T, E] -> (weights [T, k] float32, expert ids [T, k])."""
    scores = logits.float().softmax(dim=-1) if cfg.scoring == "softmax" else logits.float().sigmoid()
    choice = scores + bias if bias is not None else scores
    if cfg.num_groups > 1:
        t, e = choice.shape
        grouped = choice.view(t, cfg.num_groups, e // cfg.num_groups)
        group_scores = grouped.max(dim=-1).values if cfg.group_score == "max" else grouped.topk(2, dim=-1)[0].sum(-1)
        keep = torch.zeros_like(group_scores).scatter_(1, group_scores.topk(cfg.topk_groups, dim=-1)[1], 1.0)
        keep = keep.unsqueeze(-1).expand_as(grouped).reshape(t, e).bool()
        # Softmax scores of dropped groups become 0 (V2); biased sigmoid scores -inf (V3), as in transformers.
        choice = choice.masked_fill(~keep, 0.0 if cfg.group_score == "max" else float("-inf"))
    if bias is None and cfg.group_score == "max":
        weights, ids = choice.topk(cfg.top_k, dim=-1)
    else:
        ids = choice.topk(cfg.top_k, dim=-1)[1]
        weights = scores.gather(1, ids)
    if cfg.renormalize:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + (1e-20 if cfg.correction_bias else 0.0))
    return weights * cfg.scaling, ids


class FusedMoE(nn.Module):
    """Routed experts with SiLU-gated MLPs; `reduce=False` leaves partial sums for DPGatherScatter."""


    def __init__(self, num_experts: int, hidden: int, intermediate: int, routing: RoutingConfig, shard: Shard,
                 mode: str, reduce: bool = True):
        super().__init__()
        self.num_experts, self.routing, self.shard, self.mode, self.reduce = num_experts, routing, shard, mode, reduce
        if mode == "ep":
            self.num_local = shard.split(num_experts, "number of routed experts")
            self.first_expert = shard.rank * self.num_local
            self.local_intermediate = intermediate
        else:
            self.num_local, self.first_expert = num_experts, 0
            self.local_intermediate = shard.split(intermediate, "moe_intermediate_size")
        router_dtype = torch.float32 if routing.float32_router else None
        self.gate = nn.Parameter(torch.empty(num_experts, hidden, dtype=router_dtype), requires_grad=False)
        self.gate.weight_loader = self._load_whole
        if routing.correction_bias:
            self.e_score_correction_bias = nn.Parameter(torch.zeros(num_experts, dtype=torch.float32),
                                                        requires_grad=False)
            self.e_score_correction_bias.weight_loader = self._load_whole
        else:
            self.e_score_correction_bias = None
        i = self.local_intermediate
        self.w13 = nn.Parameter(torch.empty(self.num_local, 2 * i, hidden), requires_grad=False)
        self.w2 = nn.Parameter(torch.empty(self.num_local, hidden, i), requires_grad=False)
        for p, parts in ((self.w13, 2), (self.w2, 1)):
            p.weight_loader = self._load_expert
            p.expected_loads = parts * num_experts  # every expert's tensors are seen, local or not

    @staticmethod
    def _load_whole(param: nn.Parameter, src: CheckpointTensor, shard_id=None) -> None:
        copy_checked(param, src.read(), src.name)

    def _load_expert(self, param: nn.Parameter, src: CheckpointTensor, shard_id: tuple[int, str]) -> None:
        expert, part = shard_id
        local = expert - self.first_expert
        if not 0 <= local < self.num_local:
            return  # another rank's expert: not read from disk at all
        i = self.local_intermediate
        if part == "down":  # [hidden, intermediate]: split along the input features in tp mode
            copy_checked(param.data[local], src.narrow(1, self.shard.rank * i, i) if self.mode == "tp"
                         else src.read(), src.name)
            return
        rows = param.data[local].narrow(0, 0 if part == "gate" else i, i)
        copy_checked(rows, src.narrow(0, self.shard.rank * i, i) if self.mode == "tp" else src.read(), src.name)

    def forward(self, x: torch.Tensor, batch=None, valid: torch.Tensor | None = None) -> torch.Tensor:
        """`valid` (bool [T], CUDA-graph padding rows False): rows that may reach the experts."""
        gate_in = x.float() if self.routing.float32_router else x
        logits = F.linear(gate_in, self.gate)
        weights, ids = route(logits, self.routing, self.e_score_correction_bias)
        if x.is_cuda:
            # Triton: tokens sorted by expert, grouped GEMMs, no host sync (capturable in a CUDA graph).
            out = fused_moe(x, self.w13, self.w2, weights, ids, self.first_expert, valid)
        else:
            out = self._experts_torch(x, weights, ids, valid)
        return all_reduce(out, self.shard) if self.reduce else out

    def _experts_torch(self, x, weights, ids, valid) -> torch.Tensor:
        out = torch.zeros_like(x)
        local_ids = ids - self.first_expert
        if valid is not None:
            local_ids = local_ids.masked_fill(~valid.unsqueeze(1), -1)
        for e in range(self.num_local):
            token_idx, slot = torch.where(local_ids == e)
            if token_idx.numel() == 0:
                continue
            h = silu_and_mul(F.linear(x[token_idx], self.w13[e]))
            y = F.linear(h, self.w2[e]) * weights[token_idx, slot, None].to(x.dtype)
            out.index_add_(0, token_idx, y)
        return out


class MoeBlock(nn.Module):
    """An MoE layer without shared experts, holding the FusedMoE as `experts` (checkpoint naming)."""

    def __init__(self, experts: FusedMoE):
        super().__init__()
        self.experts = experts

    def forward(self, x: torch.Tensor, batch=None, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.experts(x, batch, valid)


def map_moe_checkpoint_name(name: str, block: str = "mlp") -> tuple[str, object] | None:
    """Names inside an MoE block `block` whose FusedMoE is its child `experts`; None for other tensors.

    `{block}.gate.weight` -> `{block}.experts.gate`, `{block}.gate.e_score_correction_bias` ->
    `{block}.experts.e_score_correction_bias`, `{block}.experts.{e}.{proj}.weight` -> w13/w2 with (e, part).
    """
    for suffix in ("weight", "e_score_correction_bias"):
        gate = f".{block}.gate.{suffix}"
        if name.endswith(gate):
            return name[: -len(gate)] + f".{block}.experts." + ("gate" if suffix == "weight" else suffix), None
    return map_expert_name(name)


EXPERT_PARTS = {"gate_proj": "gate", "up_proj": "up", "down_proj": "down", "w1": "gate", "w3": "up", "w2": "down"}


def map_expert_name(name: str) -> tuple[str, tuple[int, str]] | None:
    """`...experts.{e}.{gate_proj|up_proj|down_proj|w1|w2|w3}.weight` -> (our parameter, (e, part))."""
    head, sep, tail = name.partition(".experts.")
    if not sep:
        return None
    expert, proj, _ = tail.split(".", 2)
    part = EXPERT_PARTS.get(proj)
    if part is None or not expert.isdigit():
        return None
    return f"{head}.experts.{'w2' if part == 'down' else 'w13'}", (int(expert), part)
