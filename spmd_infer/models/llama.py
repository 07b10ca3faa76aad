"""Llama 1/2/3 (and the shared decoder that Qwen2/Qwen3 reuse), tensor-parallel through its layers."""

from __future__ import annotations

import os
from typing import Any

import torch
from spmd_kernels.activation import silu_and_mul_quantized
from spmd_kernels.qkv_epilogue import RopeStore
from torch import nn

from ..forward_batch import ForwardBatch
from ..layers.activation import silu_and_mul
from ..layers.attention import PagedAttention
from ..layers.embed_head import ParallelLMHead, VocabParallelEmbedding
from ..layers.layernorm import RMSNorm
from ..layers.linear import (MergedLinear, QKVParallelLinear, RoundedRows, RowParallelLinear,
                             hold_linears_in_float8)
from ..layers.rotary import max_positions, rope_parameters, shared_rotary
from ..layers.dp_attention import DPGatherScatter
from ..parallel.comm import Shard
from ..parallel.sharding import LayerSharding

# Rotary embedding and the KV-cache store in one kernel on the GPU (kernels/rotary_store_kv.py; Qwen3's q/k norms
# with them, qk_norm_rotary_store_kv): one launch a layer fewer, 119 -> 96 us a step at Llama-3-8B bs1 (H200,
# tests/gpu/run_bs1_profile.sh at 95c0eb3). SPMD_ROTARY_STORE_KV=0 keeps the store a kernel of its own.
FUSE_ROTARY_STORE = os.environ.get("SPMD_ROTARY_STORE_KV", "1") == "1"
# The rotary embedding and KV-cache store in the qkv projection's skinny_gemm epilogue at decode
# (kernels/qkv_rope_store.py; neox rotation of whole heads, as Llama-3 and Qwen2 have): Llama-3-8B bs1 4.7 -> 4.5 ms,
# 78.5% -> 81.7-83.4% MBU (H200, tests/gpu/run_bs1_fused.sh). SPMD_QKV_ROPE=0 keeps rotary_store_kv.
QKV_ROPE_ON = os.environ.get("SPMD_QKV_ROPE", "1") == "1"
# A float8 down projection's input rounded to float8 by the SiLU kernel as it writes it (silu_and_mul_quantized)
# rather than by a launch of its own: bit for bit the same values, one launch and one bf16 round trip of h fewer a
# layer (LinearBase.takes_rounded_inputs says where). H200, session 18
# (tests/gpu/run_fp8_fused_silu.sh): the kernel tests pass on sm_90; Llama-3-8B decode @1k with float8 linear layers
# bs1 3.2 against 3.3 ms a step, bs64 6.7 against 6.6 (within run-to-run spread); the Qwen3 check from its float8
# copy gives the same tokens. SPMD_FP8_FUSED_SILU=0 rounds h by its own launch. (The same in the RMSNorms before
# qkv and gate_up, as vLLM / SGLang fuse them, was built and timed in session 18: Llama-3-8B decode bs1 / bs64 3.1 /
# 6.7 ms a step either way, twice each (programmatic dependent launch already hides a Triton launch between Triton
# kernels), and in fp32 not bit-equal to the two launches (the norm's sum reduced in another order): removed.)
FUSED_SILU_ROUNDING = os.environ.get("SPMD_FP8_FUSED_SILU", "1") == "1"


class LlamaAttention(nn.Module):
    def __init__(self, config: Any, shard: Shard):
        super().__init__()
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        qkv_bias, o_bias = self.biases(config)
        self.qkv_proj = QKVParallelLinear(config.hidden_size, self.head_dim, config.num_attention_heads,
                                          config.num_key_value_heads, qkv_bias, shard)
        self.num_heads, self.num_kv_heads = self.qkv_proj.num_heads, self.qkv_proj.num_kv_heads
        self.o_proj = RowParallelLinear(config.num_attention_heads * self.head_dim, config.hidden_size, o_bias,
                                        shard)
        self.rotary_emb = shared_rotary(self.head_dim, self.head_dim, max_positions(config), rope_parameters(config))
        self.attn = PagedAttention(self.num_heads, self.num_kv_heads, self.head_dim, self.head_dim ** -0.5)
        cls = type(self)
        rotary_alone = cls.position_qk is LlamaAttention.position_qk  # q and k positioned by the rotary embedding only
        # A subclass that positions q and k its own way fuses the store only through its own position_qk_and_store.
        self.fuse_rotary_store = FUSE_ROTARY_STORE and (
            rotary_alone or cls.position_qk_and_store is not LlamaAttention.position_qk_and_store)
        # The positioning and store go into the qkv projection's epilogue (SPMD_QKV_ROPE) only where the rotary
        # embedding alone positions q and k, over whole heads in neox order. (Qwen3's q/k norms in it too were timed
        # slower and removed: kernels/qkv_rope_store.py.)
        self.rope_in_qkv_epilogue = (QKV_ROPE_ON and rotary_alone and self.fuse_rotary_store
                                     and not self.rotary_emb.interleaved and self.rotary_emb.rot_dim == self.head_dim)

    def defer_reduce_to_norm(self) -> None:
        """forward returns o_proj's output as it is: its reduce moves into the RMSNorm after attention."""
        self.o_proj.reduce_in_norm = True

    @staticmethod
    def biases(config: Any) -> tuple[bool, bool]:
        """(q/k/v bias, o_proj bias): Llama's attention_bias covers all four projections."""
        bias = bool(getattr(config, "attention_bias", False))
        return bias, bias

    def split_qkv(self, qkv: torch.Tensor):
        q, k, v = qkv.split(
            [self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim, self.num_kv_heads * self.head_dim], -1)
        return (q.view(-1, self.num_heads, self.head_dim), k.view(-1, self.num_kv_heads, self.head_dim),
                v.view(-1, self.num_kv_heads, self.head_dim))

    def position_qk(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor):
        """q and k as attention reads them: rotated (in place on CUDA)."""
        return self.rotary_emb(positions, q, k)

    def position_qk_and_store(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                              slot_mapping: torch.Tensor, q_out: torch.Tensor | None = None) -> torch.Tensor:
        """position_qk in place (q into q_out when given), then k and v into the paged caches, in one kernel
        (FUSE_ROTARY_STORE); returns the positioned q."""
        return self.rotary_emb.rotate_and_store(positions, q, k, v, self.attn.k_cache, self.attn.v_cache,
                                                slot_mapping, q_out)[0]

    def q_destination(self, q: torch.Tensor, batch: ForwardBatch) -> torch.Tensor | None:
        """Where position_qk_and_store leaves q: a prefill graph's static attention input while one is captured (the
        piece then ends without a copy of q), else in place. (Positioning over part of each head leaves the rest
        where it is: in place then.)"""
        split = batch.attention_split
        if split is None or self.rotary_emb.rot_dim != self.head_dim:
            return None
        return split.q_input(q.shape[1:], q.dtype)

    def rope_store(self, positions: torch.Tensor, batch: ForwardBatch) -> RopeStore:
        """What the qkv projection's epilogue applies: the rotary embedding and the KV-cache store."""
        return RopeStore(positions, self.rotary_emb.cos_sin, batch.slot_mapping, self.attn.k_cache, self.attn.v_cache,
                         self.num_heads, self.num_kv_heads, self.head_dim)

    def forward(self, positions: torch.Tensor, hidden: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        """hidden: the normalised layer input; returns the attention output."""
        qkv, kv_stored = self.project(positions, hidden, batch)
        q, k, v = self.split_qkv(qkv)
        if not kv_stored:  # else the projection's epilogue rotated q and k and stored k and v
            if self.fuse_rotary_store and self.attn.stores_through_kernels(q, batch):
                q = self.position_qk_and_store(positions, q, k, v, batch.slot_mapping, self.q_destination(q, batch))
                kv_stored = True
            else:
                q, k = self.position_qk(positions, q, k)
        return self.o_proj(self.attn(q, k, v, batch, kv_stored=kv_stored).flatten(1))

    def project(self, positions: torch.Tensor, hidden: torch.Tensor,
                batch: ForwardBatch) -> tuple[torch.Tensor, bool]:
        """(qkv, whether k and v are already rotated into the caches): at decode, one skinny_gemm launch with the
        rotary embedding and KV store in its epilogue where that fuses (SPMD_QKV_ROPE), else the projection."""
        if self.rope_in_qkv_epilogue and self.attn.stores_through_kernels(hidden, batch):
            qkv = self.qkv_proj.forward_rope_store(hidden, self.rope_store(positions, batch))
            if qkv is not None:
                return qkv, True
        return self.qkv_proj(hidden), False


class LlamaMLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int, shard: Shard, bias: bool = False,
                 reduce: bool = True):
        super().__init__()
        self.gate_up_proj = MergedLinear(hidden_size, [("gate_proj", intermediate_size, True, bias),
                                                       ("up_proj", intermediate_size, True, bias)], shard)
        self.down_proj = RowParallelLinear(intermediate_size, hidden_size, bias, shard, reduce=reduce)

    def forward(self, x: torch.Tensor, batch: ForwardBatch | None = None, valid=None) -> torch.Tensor:
        gate_up = self.gate_up_proj(x)  # padding rows are harmless to a dense MLP
        if FUSED_SILU_ROUNDING and self.down_proj.takes_rounded_inputs(gate_up):
            # The SiLU kernel rounds h to float8 as it writes it: bit for bit what the down projection's own
            # rounding launch would make, one launch fewer.
            rows = gate_up.reshape(-1, gate_up.shape[-1])
            h, h_scale = silu_and_mul_quantized(rows, self.down_proj.fp8_block[1])
            out = self.down_proj(RoundedRows(h, h_scale, gate_up.dtype))
            return out if gate_up.dim() == 2 else out.view(*gate_up.shape[:-1], -1)  # [T, H] rows as they came
        return self.down_proj(silu_and_mul(gate_up))

    def defer_reduce_to_norm(self) -> None:
        """forward returns down_proj's output as it is: its reduce moves into the RMSNorm after this MLP."""
        self.down_proj.reduce_in_norm = True


def reduce_in_next_norm(*modules: nn.Module) -> None:
    """Leave the attention's and the MLP's (or MoE's) output reduce over the TP group to the RMSNorm after each
    (post_attention_layernorm; the next layer's input_layernorm or the final norm), which sums it in the same kernel
    where the group has the push all-reduce (kernels/push_all_reduce.py): at tp2 decode two kernels a layer fewer,
    and one trip over NVLink for two round trips. Modules say how by `defer_reduce_to_norm`; those without it (a
    subclass that combines the output with more before the norm must override it) reduce as before."""
    for module in modules:
        defer = getattr(module, "defer_reduce_to_norm", None)
        if defer is not None:
            defer()


def sharded_mlp(build, sharding: LayerSharding) -> nn.Module:
    """`build(shard, reduce)` makes an MLP or MoE over `sharding.mlp`. With DP attention it spans every
    rank and leaves its partial sums unreduced: the decoder layer's DPGatherScatter reduces them."""
    return build(sharding.mlp, not sharding.dp_attention)


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: Any, sharding: LayerSharding, attention_cls: type = LlamaAttention, layer_idx: int = 0):
        super().__init__()
        self.self_attn = attention_cls(config, sharding.attn)
        self.mlp = self.build_mlp(config, sharding, layer_idx)
        self.dp_gather = DPGatherScatter(sharding) if sharding.dp_attention else None
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        # Under DP attention the MLP's sums are left to the next norm by the DP gather instead (ScatterSums).
        reduce_in_next_norm(self.self_attn, *(() if sharding.dp_attention else (self.mlp,)))

    def build_mlp(self, config: Any, sharding: LayerSharding, layer_idx: int) -> nn.Module:
        bias = getattr(config, "mlp_bias", False)
        return sharded_mlp(lambda shard, reduce: LlamaMLP(config.hidden_size, config.intermediate_size, shard, bias,
                                                          reduce), sharding)

    def forward(self, positions, hidden, residual, batch: ForwardBatch):
        if residual is None:
            residual, hidden = hidden, self.input_layernorm(hidden)
        else:
            hidden, residual = self.input_layernorm(hidden, residual)
        hidden = self.self_attn(positions, hidden, batch)
        hidden, residual = self.post_attention_layernorm(hidden, residual)
        if self.dp_gather is not None:
            return self.dp_gather(self.mlp, hidden, batch), residual
        return self.mlp(hidden, batch, valid=batch.token_valid), residual


class LlamaModel(nn.Module):
    def __init__(self, config: Any, sharding: LayerSharding, attention_cls: type = LlamaAttention,
                 layer_cls: type = LlamaDecoderLayer):
        super().__init__()
        self.embed_tokens = VocabParallelEmbedding(config.vocab_size, config.hidden_size, sharding.attn)
        self.layers = nn.ModuleList(
            layer_cls(config, sharding, attention_cls, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        hidden, residual = self.embed_tokens(batch.input_ids), None
        for layer in self.layers:
            hidden, residual = layer(batch.positions, hidden, residual, batch)
        hidden, _ = self.norm(hidden, residual)
        return hidden


class LlamaForCausalLM(nn.Module):
    attention_cls: type = LlamaAttention
    layer_cls: type = LlamaDecoderLayer
    # Checkpoint names that live inside one merged parameter here: name part -> (our part, shard id).
    packed_modules_mapping = {
        "q_proj": ("qkv_proj", "q"), "k_proj": ("qkv_proj", "k"), "v_proj": ("qkv_proj", "v"),
        "gate_proj": ("gate_up_proj", 0), "up_proj": ("gate_up_proj", 1),
    }

    @classmethod
    def check_config(cls, config: Any) -> None:
        """A ConfigError for a config these layers cannot build, raised before any weight is read (models/registry.py);
        a subclass adds its own checks."""

    def __init__(self, config: Any, sharding: LayerSharding):
        super().__init__()
        self.config = config
        self.model = LlamaModel(config, sharding, self.attention_cls, self.layer_cls)
        # The LM head stays inside the DP group (vocab split over TP): no cross-DP gather of logits.
        self.lm_head = ParallelLMHead(config.vocab_size, config.hidden_size, sharding.attn)
        if getattr(config, "tie_word_embeddings", False):
            self.lm_head.weight = self.model.embed_tokens.weight
        if sharding.fp8_linear_block is not None:
            hold_linears_in_float8(self, sharding.fp8_linear_block)

    def map_checkpoint_name(self, name: str) -> tuple[str, object]:
        """Checkpoint tensor name -> (our parameter name, shard id for merged parameters or None)."""
        for part, (merged, shard_id) in self.packed_modules_mapping.items():
            if f".{part}." in name:
                return name.replace(f".{part}.", f".{merged}."), shard_id
        return name, None

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        """Hidden states of every token; `compute_logits` turns the sampled rows into logits."""
        return self.model(batch)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)
