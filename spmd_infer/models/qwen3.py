"""Qwen3: the Llama decoder with per-head RMSNorm on q and k before rotary (and an explicit head_dim)."""

from __future__ import annotations

from spmd_kernels import qk_norm_rotary, qk_norm_rotary_store_kv

from ..layers.layernorm import RMSNorm
from .llama import LlamaAttention, LlamaForCausalLM


class Qwen3Attention(LlamaAttention):
    def __init__(self, config, shard):
        super().__init__(config, shard)
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps)

    def position_qk(self, positions, q, k):
        if q.is_cuda:  # both norms and rotary in one Triton kernel, in place in the qkv output
            rope = self.rotary_emb
            return qk_norm_rotary(q, k, positions, rope.cos_sin, self.q_norm.weight, self.k_norm.weight,
                                  self.q_norm.eps, is_neox=not rope.interleaved)
        return self.rotary_emb(positions, self.q_norm(q), self.k_norm(k))

    def position_qk_and_store(self, positions, q, k, v, slot_mapping, q_out=None):
        # Both norms, rotary and the KV store in one Triton kernel: four launches a layer become one.
        rope = self.rotary_emb
        return qk_norm_rotary_store_kv(q, k, v, positions, rope.cos_sin, self.q_norm.weight, self.k_norm.weight,
                                       self.q_norm.eps, not rope.interleaved, self.attn.k_cache, self.attn.v_cache,
                                       slot_mapping, q_out=q_out)[0]


class Qwen3ForCausalLM(LlamaForCausalLM):
    attention_cls = Qwen3Attention
