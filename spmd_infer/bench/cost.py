"""Bytes read and FLOPs of one forward step on this rank, counted from the sharded model's own parameters.

The limits the benchmark compares with:
- decode: (weight bytes read + KV bytes read) / HBM bandwidth. Every dense weight of the rank is read
  once a step; the LM head only when some row is sampled; embedding rows only for the step's tokens.
  A MoE layer reads only the experts that some token was routed to. We do not see the router's choices,
  so we take their expectation under uniform routing (which random weights approximately give): each
  token picks top_k of E experts, so a given expert is missed by all T tokens with probability
  (1 - top_k/E)^T and E_local * (1 - (1 - top_k/E)^T) of the rank's experts are read. This never
  exceeds min(E_local, T * top_k), the simpler bound.
- prefill: 2 FLOPs per weight per token (MoE: top_k experts' weights per token, spread over the ranks
  holding them) plus attention: 4 * heads * head_dim FLOPs (QK^T and PV) per query-key pair, causal.
With DP attention the MLP/MoE layers are sharded over every rank and see every DP group's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from torch import nn

from ..layers.embed_head import ParallelLMHead, VocabParallelEmbedding
from ..layers.moe import FusedMoE


def _bytes(p) -> int:
    return p.numel() * p.element_size()


@dataclass
class MoeLayerCost:
    num_experts: int
    """E, routed experts in the layer (all ranks)."""
    num_local: int
    """Experts whose weights this rank holds (E/n with ep; E, each a slice, with tp)."""
    top_k: int
    expert_params: int
    """Weights of one local expert on this rank (gate, up and down)."""
    expert_bytes: int

    def expected_active(self, tokens: int) -> float:
        """Local experts that `tokens` routed tokens touch, in expectation under uniform routing."""
        if tokens <= 0:
            return 0.0
        return self.num_local * (1.0 - (1.0 - self.top_k / self.num_experts) ** tokens)


@dataclass
class ModelCost:
    attn_params: int = 0
    """Matmul weights outside the MLPs (attention projections): run on this DP group's tokens."""
    attn_bytes: int = 0
    """Every non-MLP weight (incl. norms) except embedding and LM head."""
    mlp_params: int = 0
    """Dense MLP, shared-expert and router matmul weights."""
    mlp_bytes: int = 0
    lm_head_params: int = 0
    lm_head_bytes: int = 0
    embed_row_bytes: int = 0
    """One embedding row on this rank: read once per token."""
    moe: list[MoeLayerCost] = field(default_factory=list)
    attn_pair_flops: list[tuple[int, int]] = field(default_factory=list)
    """Per attention layer: FLOPs per causal (query, key) pair in (prefill, decode) form."""
    kv_bytes_per_token: int = 0
    total_bytes: int = 0
    """Every weight this rank holds."""

    @classmethod
    def from_model(cls, model: nn.Module, kv_bytes_per_token: int) -> "ModelCost":
        c = cls(kv_bytes_per_token=kv_bytes_per_token)
        special: set[int] = set()
        for m in model.modules():
            if isinstance(m, ParallelLMHead):
                c.lm_head_params, c.lm_head_bytes = m.weight.numel(), _bytes(m.weight)
                special.add(id(m.weight))
            elif isinstance(m, VocabParallelEmbedding):
                c.embed_row_bytes = _bytes(m.weight) // m.weight.shape[0]
                special.add(id(m.weight))
            elif isinstance(m, FusedMoE):
                experts = (m.w13, m.w2)
                scales = tuple(s for s in (m.w13_scale, m.w2_scale) if s is not None)  # float8 experts' blocks
                per_expert = sum(w[0].numel() for w in experts)
                c.moe.append(MoeLayerCost(m.num_experts, m.num_local, m.routing.top_k, per_expert,
                                          sum(_bytes(w[0]) for w in experts + scales)))
                special.update(id(w) for w in experts + scales)
            if hasattr(m, "kv_cache_dims"):
                c.attn_pair_flops.append(_pair_flops(m))
        for name, p in model.named_parameters():
            c.total_bytes += _bytes(p)
            if id(p) in special:
                continue
            matmul = p.numel() if p.dim() >= 2 and not name.endswith("weight_scale") else 0  # (float8 blocks' scales)
            if ".mlp." in name:
                c.mlp_params += matmul
                c.mlp_bytes += _bytes(p)
            else:
                c.attn_params += matmul
                c.attn_bytes += _bytes(p)
        return c

    def weight_bytes(self, tokens: int, mlp_tokens: int, sampled: int) -> float:
        """Weight bytes a step reads: `tokens` in this DP group, `mlp_tokens` into the MLPs, `sampled` logit rows."""
        moe = sum(layer.expected_active(mlp_tokens) * layer.expert_bytes for layer in self.moe)
        head = self.lm_head_bytes if sampled else 0
        return self.attn_bytes + self.mlp_bytes + head + tokens * self.embed_row_bytes + moe

    def kv_bytes(self, context_lens: Sequence[int]) -> int:
        """KV-cache bytes that attention reads: every sequence's whole context."""
        return sum(context_lens) * self.kv_bytes_per_token

    def flops(self, chunks: Sequence[tuple[int, int]], mlp_tokens: int, sampled: int, prefill: bool) -> float:
        """FLOPs of a step whose sequences run `chunks` = (new tokens, context length after the step)."""
        tokens = sum(n for n, _ in chunks)
        linear = 2 * (self.attn_params * tokens + self.mlp_params * mlp_tokens + self.lm_head_params * sampled)
        # Each token runs top_k experts; this rank holds num_local of E of them (or a slice of each with tp).
        linear += sum(2 * layer.expert_params * mlp_tokens * layer.top_k * layer.num_local / layer.num_experts
                      for layer in self.moe)
        pairs = sum(causal_pairs(n, ctx) for n, ctx in chunks)
        attention = sum(pf if prefill else df for pf, df in self.attn_pair_flops) * pairs
        return linear + attention

    def to_json(self) -> dict:
        return {"weight_bytes_per_rank": self.total_bytes, "dense_weight_bytes_per_step": self.attn_bytes
                + self.mlp_bytes + self.lm_head_bytes, "kv_bytes_per_token": self.kv_bytes_per_token,
                "moe_layers": len(self.moe), "expert_bytes": self.moe[0].expert_bytes if self.moe else 0,
                "local_experts": self.moe[0].num_local if self.moe else 0}


def causal_pairs(new_tokens: int, context: int) -> int:
    """(query, key) pairs when `new_tokens` queries end a context of `context` keys: query j sees
    context - new_tokens + j + 1 keys."""
    before = context - new_tokens
    return new_tokens * before + new_tokens * (new_tokens + 1) // 2


def _pair_flops(m: nn.Module) -> tuple[int, int]:
    """(prefill, decode) FLOPs per (query, key) pair of one attention layer on this rank."""
    if hasattr(m, "kv_lora_rank"):
        # MLA: prefill expands latents to per-head K (nope + rope) and V; decode attends in latent space.
        h, r = m.num_heads, m.kv_lora_rank
        return 2 * h * (m.nope + m.rope) + 2 * h * m.v_dim, 2 * h * (r + m.rope) + 2 * h * r
    per_pair = 4 * m.num_heads * m.head_dim  # QK^T and PV, 2 FLOPs per multiply-add each
    return per_pair, per_pair
