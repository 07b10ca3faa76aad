"""Qwen2-MoE (Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B): Qwen2 attention with top-k routed experts plus one shared expert,
whose output a per-token sigmoid gate scales; dense MLPs where the config says so."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..layers.linear import ReplicatedLinear
from ..layers.moe import FusedMoE, RoutingConfig, SharedExpertsMoE, map_moe_checkpoint_name
from ..parallel.comm import Shard
from ..parallel.sharding import LayerSharding
from .llama import LlamaDecoderLayer, LlamaForCausalLM, LlamaMLP, sharded_mlp
from .qwen2 import Qwen2Attention
from .qwen3_moe import is_sparse_layer


class Qwen2MoeAttention(Qwen2Attention):
    @staticmethod
    def biases(config) -> tuple[bool, bool]:
        return bool(getattr(config, "qkv_bias", True)), False  # Qwen2-MoE's config names its q/k/v bias


def qwen2_moe(config: Any, shard: Shard, mode: str, reduce: bool,
              fp8_block: tuple[int, int] | None = None) -> SharedExpertsMoE:
    routing = RoutingConfig(top_k=config.num_experts_per_tok, renormalize=bool(config.norm_topk_prob))
    experts = FusedMoE(config.num_experts, config.hidden_size, config.moe_intermediate_size, routing, shard, mode,
                       reduce=False, fp8_block=fp8_block)
    shared = gate = None
    if config.shared_expert_intermediate_size:
        shared = LlamaMLP(config.hidden_size, config.shared_expert_intermediate_size, shard, reduce=False)
        gate = ReplicatedLinear(config.hidden_size, 1)
        gate.keeps_dtype = True  # one output feature, a weight of hidden_size values: never worth float8
    return SharedExpertsMoE(experts, shared, shard, reduce, shared_gate=gate)


class Qwen2MoeDecoderLayer(LlamaDecoderLayer):
    def build_mlp(self, config: Any, sharding: LayerSharding, layer_idx: int) -> nn.Module:
        if not is_sparse_layer(config, layer_idx):
            return super().build_mlp(config, sharding, layer_idx)
        return sharded_mlp(lambda shard, reduce: qwen2_moe(config, shard, sharding.moe, reduce,
                                                           sharding.fp8_expert_block), sharding)


class Qwen2MoeForCausalLM(LlamaForCausalLM):
    attention_cls = Qwen2MoeAttention
    layer_cls = Qwen2MoeDecoderLayer

    def map_checkpoint_name(self, name: str):
        # Our block holds its shared MLP as `shared_experts` (DeepSeek's name) and the gate as `shared_gate`.
        name = name.replace(".mlp.shared_expert.", ".mlp.shared_experts.").replace(
            ".mlp.shared_expert_gate.", ".mlp.shared_gate.")
        return map_moe_checkpoint_name(name) or super().map_checkpoint_name(name)
