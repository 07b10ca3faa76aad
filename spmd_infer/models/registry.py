"""Maps a checkpoint's `architectures` entry to our model class, and checks it fits the layout."""

from __future__ import annotations

from typing import Any

from ..layers.fp8_checkpoint import block_fp8_scheme
from ..layers.rotary import ROPE_TYPES, rope_parameters
from ..parallel.dims import ConfigError
from .deepseek_v2 import DeepseekV2ForCausalLM, DeepseekV3ForCausalLM
from .llama import LlamaForCausalLM
from .mistral import MistralForCausalLM
from .mixtral import MixtralForCausalLM
from .qwen2 import Qwen2ForCausalLM
from .qwen2_moe import Qwen2MoeForCausalLM
from .qwen3 import Qwen3ForCausalLM
from .qwen3_moe import Qwen3MoeForCausalLM

MODEL_CLASSES: dict[str, type] = {
    "LlamaForCausalLM": LlamaForCausalLM,
    "MistralForCausalLM": MistralForCausalLM,
    "Qwen2ForCausalLM": Qwen2ForCausalLM,
    "Qwen3ForCausalLM": Qwen3ForCausalLM,
    "Qwen2MoeForCausalLM": Qwen2MoeForCausalLM,
    "Qwen3MoeForCausalLM": Qwen3MoeForCausalLM,
    "MixtralForCausalLM": MixtralForCausalLM,
    "DeepseekV2ForCausalLM": DeepseekV2ForCausalLM,
    "DeepseekV3ForCausalLM": DeepseekV3ForCausalLM,
}


def model_class(hf_config: Any) -> type:
    """Our class for the checkpoint, or a ConfigError saying why it cannot run (before any weight is read)."""
    check_quantization(hf_config)
    archs = list(getattr(hf_config, "architectures", None) or [])
    for arch in archs:
        if arch in MODEL_CLASSES:
            check_rope(hf_config)
            check_activation(hf_config)
            MODEL_CLASSES[arch].check_config(hf_config)
            return MODEL_CLASSES[arch]
    raise ConfigError(f"unknown architecture {archs or '(config.json names none)'}; supported: "
                      f"{sorted(MODEL_CLASSES)}. Check model.path points at a supported checkpoint")


def check_activation(hf_config: Any) -> None:
    """Every MLP and expert here is SiLU-gated (silu_and_mul): a config naming another activation is refused before
    any weight is read rather than run wrongly."""
    act = getattr(hf_config, "hidden_act", None) or "silu"
    if act not in ("silu", "swish"):  # transformers' ACT2FN maps both names to SiLU
        raise ConfigError(f"config.json's hidden_act={act!r} is not supported: this engine's MLPs are SiLU-gated "
                          f"(hidden_act silu); run a checkpoint whose config.json names silu")


def check_rope(hf_config: Any) -> None:
    """A rotary scaling the engine does not compute (dynamic NTK, longrope, ...) would fail only as the model is
    built, on every rank: refused here, before any weight is read."""
    kind = rope_parameters(hf_config)["rope_type"]
    if kind not in ROPE_TYPES:
        raise ConfigError(f"config.json's rope scaling rope_type={kind!r} is not supported (supported: "
                          f"{', '.join(ROPE_TYPES)}); run a checkpoint whose config.json uses one of those")


def check_quantization(hf_config: Any) -> None:
    """Weights are loaded in the model's dtype: unquantized ones as stored, block-scaled float8 ones (DeepSeek-V3's
    release) dequantized as read. Any other quantization would fail only after every file was read, on tensors
    with no place in the model: refused here, before any weight is read."""
    try:
        block_fp8_scheme(hf_config)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def check_layout(hf_config: Any, tp: int) -> None:
    """Attention heads are split over tp; both head counts must divide evenly."""
    heads = hf_config.num_attention_heads
    kv_heads = getattr(hf_config, "num_key_value_heads", None) or heads
    if heads % tp or kv_heads % tp:
        divisors = [d for d in range(1, heads + 1) if heads % d == 0 and kv_heads % d == 0]
        raise ConfigError(f"parallel.tp={tp} does not divide the model's attention heads ({heads}) and KV heads "
                          f"({kv_heads}); choose parallel.tp from {divisors} (and raise parallel.dp instead)")


def check_mlp_layout(hf_config: Any, shards: int, moe: str, dp_attention: bool = False) -> None:
    """Dense MLPs and experts are split over `shards` ranks (tp, or dp*tp with DP attention): sizes must divide."""
    sizes = mlp_split_sizes(hf_config, moe)
    bad = [(what, n) for what, n in sizes if n % shards]
    if not bad:
        return
    how = "parallel.dp * parallel.tp, as parallel.dp_attention=true" if dp_attention else "parallel.tp"
    fits = [d for d in range(1, shards) if all(n % d == 0 for _, n in sizes)]
    what, n = bad[0]
    hint = f"choose a layout whose MLP rank count divides it (largest that fits: {fits[-1]})"
    if what == "number of routed experts":
        hint = f"use parallel.moe=tp (split every expert instead of assigning whole experts), or {hint}"
    raise ConfigError(f"the MLP/MoE layers are split over {shards} ranks ({how}), which does not divide the "
                      f"model's {what} ({n}); {hint}")


def expert_width(hf_config: Any) -> tuple[str, int]:
    """(config key, size) of a routed expert's intermediate width: moe_intermediate_size (DeepSeek, Qwen3-MoE) or
    intermediate_size (Mixtral)."""
    name = "moe_intermediate_size" if getattr(hf_config, "moe_intermediate_size", None) else "intermediate_size"
    return name, getattr(hf_config, name)


def mlp_split_sizes(hf_config: Any, moe: str) -> list[tuple[str, int]]:
    """(what, size) of every dimension that the MLP ranks split: experts or their width, shared and dense MLPs."""
    experts = next((n for n in (getattr(hf_config, a, None) for a in ("n_routed_experts", "num_experts",
                                                                       "num_local_experts")) if n), 0)
    if not experts:
        return [("intermediate_size", hf_config.intermediate_size)]
    width_name, width = expert_width(hf_config)
    sizes = [("number of routed experts", experts) if moe == "ep" else (width_name, width)]
    shared = getattr(hf_config, "n_shared_experts", None) or 0
    if shared:
        sizes.append(("n_shared_experts * moe_intermediate_size", shared * width))
    if getattr(hf_config, "shared_expert_intermediate_size", None):  # Qwen2-MoE's one shared expert
        sizes.append(("shared_expert_intermediate_size", hf_config.shared_expert_intermediate_size))
    dense = (getattr(hf_config, "first_k_dense_replace", None)
             or (getattr(hf_config, "moe_layer_freq", None) or 1) > 1
             or getattr(hf_config, "mlp_only_layers", None)
             or (getattr(hf_config, "decoder_sparse_step", None) or 1) > 1)
    if dense:
        sizes.append(("intermediate_size", hf_config.intermediate_size))
    return sizes
