"""Qwen2: the Llama decoder with biases on the q/k/v projections (and none on o_proj)."""

from __future__ import annotations

from .llama import LlamaAttention, LlamaForCausalLM


class Qwen2Attention(LlamaAttention):
    @staticmethod
    def biases(config) -> tuple[bool, bool]:
        return True, False  # fixed by the architecture; Qwen2 configs carry no attention_bias


class Qwen2ForCausalLM(LlamaForCausalLM):
    attention_cls = Qwen2Attention
