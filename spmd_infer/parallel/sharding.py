"""LayerSharding: which ranks a model's attention and MLP/MoE layers are split over, for either DP mode."""

from __future__ import annotations

from dataclasses import dataclass

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

    @classmethod
    def from_dims(cls, dims: ParallelDims, moe: str = "ep") -> "LayerSharding":
        attn = Shard(dims.tp_rank, dims.tp, dims.tp_group)
        dp = Shard(dims.dp_rank, dims.dp, dims.dp_group)
        if dims.dp_attention and dims.dp > 1:
            # Rank order of the flattened mesh is dp-major: world index = dp_rank * tp + tp_rank.
            mlp = Shard(dims.dp_rank * dims.tp + dims.tp_rank, dims.dp * dims.tp, dims.world_group)
            return cls(attn=attn, mlp=mlp, dp=dp, dp_attention=True, moe=moe)
        return cls(attn=attn, mlp=attn, dp=dp, dp_attention=False, moe=moe)

    @classmethod
    def single(cls) -> "LayerSharding":
        return cls(attn=Shard(), mlp=Shard(), dp=Shard())
