"""transformers computing on float8-rounded keys and values, the reference for cache.dtype=fp8 jobs: what attention
reads rounded to float8 e4m3 where the engine's cache would round it."""

from __future__ import annotations

import torch

FP8 = torch.float8_e4m3fn


def rounded(x: torch.Tensor) -> torch.Tensor:
    return x.to(FP8).to(x.dtype)


def fp8_rounded_attention(monkeypatch) -> None:
    """Patch transformers' Llama (eager attention: keys after rotary and values) and DeepSeek-V2 (the normed KV
    latents and rotary keys MLA caches, before kv_b_proj expands them) to read float8-rounded values."""
    from transformers.models.deepseek_v2 import modeling_deepseek_v2
    from transformers.models.llama import modeling_llama

    attention = modeling_llama.eager_attention_forward

    def llama_rounded(module, query, key, value, *args, **kwargs):
        return attention(module, query, rounded(key), rounded(value), *args, **kwargs)

    monkeypatch.setattr(modeling_llama, "eager_attention_forward", llama_rounded)
    expand_kv = modeling_deepseek_v2.DeepseekV2Attention.expand_kv
    monkeypatch.setattr(modeling_deepseek_v2.DeepseekV2Attention, "expand_kv",
                        lambda self, kv_nope, k_rot: expand_kv(self, rounded(kv_nope), rounded(k_rot)))
