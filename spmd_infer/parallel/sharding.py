"""LayerSharding: which ranks a model's attention and MLP/MoE layers are split over, for either DP mode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .comm import Shard
from .dims import ParallelDims


@dataclass(frozen=True)
class LayerSharding:
    attn: Shard
    """Attention heads, embedding and LM head: the TP group inside this DP group."""
    mlp: Shard
    """Dense MLP and MoE: the TP group (decoupled DP) or every dp*tp rank (DP attention)."""
    dp: Shard
    """This rank's DP group (same TP index in every DP group): gathers tokens for DP-attention MLPs."""
    dp_attention: bool = False
    moe: str = "ep"
    """MoE split: ep (whole experts per rank) or tp (every expert's intermediate split)."""
    fp8_expert_block: Optional[tuple[int, int]] = None
    """Routed experts kept in float8 e4m3 with a float32 scale per block of at most these (rows, columns) (the
    checkpoint's own blocks, or 128 x 128); None: in the model's dtype (model.expert_dtype)."""
    fp8_linear_block: Optional[tuple[int, int]] = None
    """Dense linear layers (attention and MLP projections, shared experts) held in float8 e4m3 with a float32 scale
    per block of these (rows, columns), where this layout keeps whole blocks on each rank
    (LinearBase.takes_float8); None: in the model's dtype (model.linear_dtype)."""

    @classmethod
    def from_dims(cls, dims: ParallelDims, moe: str = "ep", fp8_expert_block: Optional[tuple[int, int]] = None,
                  fp8_linear_block: Optional[tuple[int, int]] = None) -> "LayerSharding":
        attn = Shard(dims.tp_rank, dims.tp, dims.tp_group)
        dp = Shard(dims.dp_rank, dims.dp, dims.dp_group)
        if dims.dp_attention and dims.dp > 1:
            # Rank order of the flattened mesh is dp-major: world index = dp_rank * tp + tp_rank.
            mlp = Shard(dims.dp_rank * dims.tp + dims.tp_rank, dims.dp * dims.tp, dims.world_group)
            return cls(attn=attn, mlp=mlp, dp=dp, dp_attention=True, moe=moe, fp8_expert_block=fp8_expert_block,
                       fp8_linear_block=fp8_linear_block)
        return cls(attn=attn, mlp=attn, dp=dp, dp_attention=False, moe=moe, fp8_expert_block=fp8_expert_block,
                   fp8_linear_block=fp8_linear_block)

    @classmethod
    def single(cls, fp8_expert_block: Optional[tuple[int, int]] = None,
               fp8_linear_block: Optional[tuple[int, int]] = None) -> "LayerSharding":
        return cls(attn=Shard(), mlp=Shard(), dp=Shard(), fp8_expert_block=fp8_expert_block,
                   fp8_linear_block=fp8_linear_block)
