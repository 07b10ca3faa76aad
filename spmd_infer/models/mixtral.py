"""Mixtral: Llama attention with a softmax top-k MoE (renormalized weights) in every layer."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..layers.moe import FusedMoE, MoeBlock, RoutingConfig, map_moe_checkpoint_name
from ..parallel.sharding import LayerSharding
from .llama import LlamaDecoderLayer, LlamaForCausalLM, sharded_mlp


class MixtralDecoderLayer(LlamaDecoderLayer):
    def build_mlp(self, config: Any, sharding: LayerSharding, layer_idx: int) -> nn.Module:
        routing = RoutingConfig(top_k=config.num_experts_per_tok, renormalize=True)
        return sharded_mlp(lambda shard, reduce: MoeBlock(FusedMoE(
            config.num_local_experts, config.hidden_size, config.intermediate_size, routing, shard, sharding.moe,
            reduce, fp8_block=sharding.fp8_expert_block)), sharding)


class MixtralForCausalLM(LlamaForCausalLM):
    layer_cls = MixtralDecoderLayer

    def map_checkpoint_name(self, name: str):
        # Mixtral calls its MoE block `block_sparse_moe`; ours is `mlp` like every other layer.
        name = name.replace(".block_sparse_moe.", ".mlp.")
        return map_moe_checkpoint_name(name) or super().map_checkpoint_name(name)
