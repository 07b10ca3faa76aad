"""Maps a checkpoint's `architectures` entry to our model class, and checks it fits the layout."""

from __future__ import annotations

from typing import Any

from ..parallel.dims import ConfigError
from .llama import LlamaForCausalLM
from .mixtral import MixtralForCausalLM
from .qwen2 import Qwen2ForCausalLM
from .qwen3 import Qwen3ForCausalLM
from .qwen3_moe import Qwen3MoeForCausalLM

MODEL_CLASSES: dict[str, type] = {
    "LlamaForCausalLM": LlamaForCausalLM,
    "Qwen2ForCausalLM": Qwen2ForCausalLM,
    "Qwen3ForCausalLM": Qwen3ForCausalLM,
    "Qwen3MoeForCausalLM": Qwen3MoeForCausalLM,
    "MixtralForCausalLM": MixtralForCausalLM,
}


def model_class(hf_config: Any) -> type:
    archs = list(getattr(hf_config, "architectures", None) or [])
    for arch in archs:
        if arch in MODEL_CLASSES:
            return MODEL_CLASSES[arch]
    raise ConfigError(f"unknown architecture {archs or '(config.json names none)'}; supported: "
                      f"{sorted(MODEL_CLASSES)}. Check model.path points at a supported checkpoint")


def check_layout(hf_config: Any, tp: int) -> None:
    """Attention heads are split over tp; both head counts must divide evenly."""
    heads = hf_config.num_attention_heads
    kv_heads = getattr(hf_config, "num_key_value_heads", None) or heads
    if heads % tp or kv_heads % tp:
        divisors = [d for d in range(1, heads + 1) if heads % d == 0 and kv_heads % d == 0]
        raise ConfigError(f"parallel.tp={tp} does not divide the model's attention heads ({heads}) and KV heads "
                          f"({kv_heads}); choose parallel.tp from {divisors} (and raise parallel.dp instead)")
