"""Mistral: the Llama decoder (v0.2 on have no sliding window; v0.1's 4096-token window holds a job's sequences to
it, models/attention_window.py)."""

from __future__ import annotations

from .llama import LlamaForCausalLM


class MistralForCausalLM(LlamaForCausalLM):
    pass
