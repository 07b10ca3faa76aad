"""DeepSeek-V2 / V2-Lite / V3: multi-head latent attention (MLA) and routed experts plus shared experts.

Read next to transformers' modeling_deepseek_v2.py and modeling_deepseek_v3.py. Under TP the heads are
split (q_proj / q_b_proj and kv_b_proj by columns, o_proj by rows); the down-projections to the latent
(q_a_proj, kv_a_proj_with_mqa) and their norms are replicated, so every TP rank caches the same latents. q_proj or
q_a_proj and kv_a_proj_with_mqa are held as one weight (q_kv_a_proj), its q part split or replicated as above.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..forward_batch import ForwardBatch
from ..layers.layernorm import RMSNorm
from ..layers.linear import ColumnParallelLinear, MergedLinear, RowParallelLinear
from ..layers.mla import LatentAttention
from ..layers.moe import FusedMoE, RoutingConfig, SharedExpertsMoE, map_moe_checkpoint_name
from ..layers.rotary import max_positions, rope_parameters, shared_rotary, yarn_mscale
from ..parallel.comm import Shard
from ..parallel.dims import ConfigError
from ..parallel.sharding import LayerSharding
from .llama import LlamaDecoderLayer, LlamaForCausalLM, LlamaMLP, sharded_mlp

LATENT_NORM_EPS = 1e-6  # q_a_layernorm / kv_a_layernorm use RMSNorm's default, not config.rms_norm_eps


def softmax_scale(params: dict[str, Any], qk_head_dim: int) -> float:
    """1/sqrt(qk_head_dim), times YaRN's mscale(factor, mscale_all_dim)^2 when the context is stretched."""
    scale = qk_head_dim ** -0.5
    mscale_all_dim = params.get("mscale_all_dim")
    if params.get("rope_type", "default") != "default" and mscale_all_dim:
        m = yarn_mscale(float(params["factor"]), float(mscale_all_dim))
        scale *= m * m
    return scale


class DeepseekV2Attention(nn.Module):
    def __init__(self, config: Any, shard: Shard):
        super().__init__()
        heads, hidden = config.num_attention_heads, config.hidden_size
        self.num_heads = shard.split(heads, "num_attention_heads")
        self.nope, self.rope, self.v_dim = config.qk_nope_head_dim, config.qk_rope_head_dim, config.v_head_dim
        self.kv_lora_rank = config.kv_lora_rank
        self.q_lora_rank = config.q_lora_rank
        qk_head_dim = self.nope + self.rope
        bias = bool(getattr(config, "attention_bias", False))
        # q_proj (split by heads) or q_a_proj (replicated) and kv_a_proj_with_mqa (replicated) all read the layer's
        # input: one weight, so one GEMM launch (DeepseekV2ForCausalLM.packed_modules_mapping loads the parts).
        if self.q_lora_rank is None:
            q_part = ("q_proj", heads * qk_head_dim, True, False)
        else:
            q_part = ("q_a_proj", self.q_lora_rank, False, bias)
            self.q_a_layernorm = RMSNorm(self.q_lora_rank, LATENT_NORM_EPS)
            self.q_b_proj = ColumnParallelLinear(self.q_lora_rank, heads * qk_head_dim, False, shard)
        self.q_kv_a_proj = MergedLinear(hidden, [q_part, ("kv_a_proj_with_mqa", self.kv_lora_rank + self.rope, False,
                                                          bias)], shard)
        self.kv_a_layernorm = RMSNorm(self.kv_lora_rank, LATENT_NORM_EPS)
        self.kv_b_proj = ColumnParallelLinear(self.kv_lora_rank, heads * (self.nope + self.v_dim), False, shard)
        self.kv_b_proj.keeps_dtype = True  # its weight is absorbed into the attention (MLA), not multiplied here
        self.o_proj = RowParallelLinear(heads * self.v_dim, hidden, bias, shard)
        params = rope_parameters(config)
        self.rotary_emb = shared_rotary(self.rope, self.rope, max_positions(config), params,
                                        interleaved=self.rope_interleaved(config))
        self.attn = LatentAttention(self.num_heads, self.kv_lora_rank, self.nope, self.rope, self.v_dim,
                                    softmax_scale(params, qk_head_dim))

    def defer_reduce_to_norm(self) -> None:
        """forward returns o_proj's output as it is: its reduce moves into the RMSNorm after attention."""
        self.o_proj.reduce_in_norm = True

    @staticmethod
    def rope_interleaved(config: Any) -> bool:
        return True  # V2 rotates (even, odd) pairs as complex numbers

    def forward(self, positions: torch.Tensor, hidden: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        q, latent, k_pe = self.q_kv_a_proj(hidden).split(self.q_kv_a_proj.part_sizes[:1] + [self.kv_lora_rank,
                                                                                           self.rope], dim=-1)
        if self.q_lora_rank is not None:
            q = self.q_b_proj(self.q_a_layernorm(q))  # (strided rows: the norm reads them where they are)
        q_nope, q_pe = q.view(-1, self.num_heads, self.nope + self.rope).split([self.nope, self.rope], dim=-1)
        if self.attn.stores_positioned(hidden, batch):  # one kernel for the three below and the cache store
            norm, rotary = self.kv_a_layernorm, self.rotary_emb
            q_pe = self.attn.position_and_store(positions, q_pe, latent, k_pe, rotary.cos_sin, not rotary.interleaved,
                                                norm.weight, norm.eps, batch)
            latent = k_pe = None
        else:
            latent = self.kv_a_layernorm(latent)  # (strided rows: the kernel reads them where they are)
            q_pe, k_pe = self.rotary_emb(positions, q_pe, k_pe.unsqueeze(1))
            k_pe = k_pe.squeeze(1)
        o = self.attn(q_nope, q_pe, latent, k_pe, self.kv_b_proj.weight, batch)
        return self.o_proj(o.flatten(1))


class DeepseekV3Attention(DeepseekV2Attention):
    @staticmethod
    def rope_interleaved(config: Any) -> bool:
        return bool(getattr(config, "rope_interleave", True))


def deepseek_moe(config: Any, routing: RoutingConfig, shard: Shard, mode: str, reduce: bool,
                 fp8_block: tuple[int, int] | None = None) -> SharedExpertsMoE:
    """Routed experts plus `n_shared_experts` shared ones (one dense MLP of their summed width)."""
    experts = FusedMoE(config.n_routed_experts, config.hidden_size, config.moe_intermediate_size, routing, shard,
                       mode, reduce=False, fp8_block=fp8_block)
    width = (config.n_shared_experts or 0) * config.moe_intermediate_size
    shared = LlamaMLP(config.hidden_size, width, shard, getattr(config, "mlp_bias", False), reduce=False) \
        if width else None
    return SharedExpertsMoE(experts, shared, shard, reduce)


def is_moe_layer(config: Any, layer_idx: int) -> bool:
    """The first `first_k_dense_replace` layers are dense; after them every `moe_layer_freq`-th is MoE."""
    freq = getattr(config, "moe_layer_freq", None) or 1
    return (config.n_routed_experts or 0) > 0 and layer_idx >= (config.first_k_dense_replace or 0) \
        and layer_idx % freq == 0


class DeepseekV2DecoderLayer(LlamaDecoderLayer):
    def build_mlp(self, config: Any, sharding: LayerSharding, layer_idx: int) -> nn.Module:
        if not is_moe_layer(config, layer_idx):
            return super().build_mlp(config, sharding, layer_idx)
        routing = self.routing(config)
        return sharded_mlp(lambda shard, reduce: deepseek_moe(config, routing, shard, sharding.moe, reduce,
                                                               sharding.fp8_expert_block), sharding)

    @staticmethod
    def routing(config: Any) -> RoutingConfig:
        """Softmax scores, greedy or group-limited (best expert per group) top-k, scaled, not renormalized."""
        method = getattr(config, "topk_method", None) or "greedy"
        if method not in ("greedy", "group_limited_greedy"):
            raise ConfigError(f"config.json's topk_method={method!r} is not supported for DeepseekV2ForCausalLM "
                              f"(supported: greedy, group_limited_greedy)")
        grouped = method == "group_limited_greedy"
        return RoutingConfig(top_k=config.num_experts_per_tok, scoring="softmax",
                             num_groups=config.n_group if grouped else 1,
                             topk_groups=config.topk_group if grouped else 1, group_score="max",
                             scaling=float(config.routed_scaling_factor), float32_router=True)


class DeepseekV3DecoderLayer(DeepseekV2DecoderLayer):
    @staticmethod
    def routing(config: Any) -> RoutingConfig:
        """Sigmoid scores; choice by score + correction bias within the groups with the best top-2 sums."""
        return RoutingConfig(top_k=config.num_experts_per_tok, scoring="sigmoid",
                             renormalize=bool(config.norm_topk_prob), num_groups=config.n_group or 1,
                             topk_groups=config.topk_group or 1, group_score="top2_sum",
                             scaling=float(config.routed_scaling_factor), correction_bias=True,
                             float32_router=True)


class DeepseekV2ForCausalLM(LlamaForCausalLM):
    attention_cls = DeepseekV2Attention
    layer_cls = DeepseekV2DecoderLayer
    # MLA's projections of the layer input are one weight (DeepseekV2Attention.q_kv_a_proj); gate / up are merged.
    packed_modules_mapping = {
        "q_proj": ("q_kv_a_proj", 0), "q_a_proj": ("q_kv_a_proj", 0), "kv_a_proj_with_mqa": ("q_kv_a_proj", 1),
        "gate_proj": ("gate_up_proj", 0), "up_proj": ("gate_up_proj", 1),
    }

    @classmethod
    def check_config(cls, config: Any) -> None:
        cls.layer_cls.routing(config)  # a routing the MoE layers cannot build

    def map_checkpoint_name(self, name: str):
        return map_moe_checkpoint_name(name) or super().map_checkpoint_name(name)


class DeepseekV3ForCausalLM(DeepseekV2ForCausalLM):
    attention_cls = DeepseekV3Attention
    layer_cls = DeepseekV3DecoderLayer

    def skip_checkpoint_name(self, name: str) -> bool:
        """The multi-token-prediction layers stored after the last decoder layer: unused for generation."""
        parts = name.split(".")
        if parts[:2] != ["model", "layers"] or len(parts) < 3 or not parts[2].isdigit():
            return False
        first = self.config.num_hidden_layers
        extra = getattr(self.config, "num_nextn_predict_layers", None) or getattr(self.config, "num_mtp_layers", 0)
        return first <= int(parts[2]) < first + (extra or 0)
