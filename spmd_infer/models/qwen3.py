"""Qwen3: the Llama decoder with per-head RMSNorm on q and k before rotary (and an explicit head_dim)."""

from __future__ import annotations

from ..layers.layernorm import RMSNorm
from .llama import LlamaAttention, LlamaForCausalLM


class Qwen3Attention(LlamaAttention):
    def __init__(self, config, shard):
        super().__init__(config, shard)
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps)

    def project_qkv(self, hidden):
        q, k, v = super().project_qkv(hidden)
        return self.q_norm(q), self.k_norm(k), v


class Qwen3ForCausalLM(LlamaForCausalLM):
    attention_cls = Qwen3Attention
