"""Qwen3-MoE: Qwen3 attention (q/k norm) with top-k routed experts, dense MLPs where the config says so."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..layers.moe import FusedMoE, MoeBlock, RoutingConfig, map_moe_checkpoint_name
from ..parallel.sharding import LayerSharding
from .llama import LlamaDecoderLayer, LlamaForCausalLM, sharded_mlp
from .qwen3 import Qwen3Attention


def is_sparse_layer(config: Any, layer_idx: int) -> bool:
    """Qwen's MoE configs: every `decoder_sparse_step`-th layer routes, but those in `mlp_only_layers`."""
    return (layer_idx not in (getattr(config, "mlp_only_layers", None) or []) and config.num_experts > 0
            and (layer_idx + 1) % config.decoder_sparse_step == 0)


class Qwen3MoeDecoderLayer(LlamaDecoderLayer):
    def build_mlp(self, config: Any, sharding: LayerSharding, layer_idx: int) -> nn.Module:
        if not is_sparse_layer(config, layer_idx):
            return super().build_mlp(config, sharding, layer_idx)
        routing = RoutingConfig(top_k=config.num_experts_per_tok, renormalize=config.norm_topk_prob)
        return sharded_mlp(lambda shard, reduce: MoeBlock(FusedMoE(
            config.num_experts, config.hidden_size, config.moe_intermediate_size, routing, shard, sharding.moe,
            reduce, fp8_block=sharding.fp8_expert_block)), sharding)


class Qwen3MoeForCausalLM(LlamaForCausalLM):
    attention_cls = Qwen3Attention
    layer_cls = Qwen3MoeDecoderLayer

    def map_checkpoint_name(self, name: str):
        return map_moe_checkpoint_name(name) or super().map_checkpoint_name(name)
