"""Tensor-parallel linear layers; each parameter's weight_loader reads only this rank's slice from disk."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from spmd_kernels.pdl import pdl_enabled
from spmd_kernels.qkv_rope_store import qkv_rope_store, qkv_rope_store_supports
from spmd_kernels.qkv_epilogue import RopeStore
from spmd_kernels.skinny_gemm import skinny_gemm, skinny_gemm_supports

from ..parallel.comm import Shard, all_reduce
from .weights import CheckpointTensor, copy_checked

# Decode-sized products (at most 16 rows) of weights between these sizes go to skinny_gemm instead of cuBLAS, when
# kernels use programmatic dependent launch (kernels/pdl.py): skinny_gemm fetches its first weight tile while the
# previous kernel drains, which cuBLAS cannot. Measured in Llama-3-8B bs1 @1k decode on an H200 (CUDA graphs,
# tests/gpu/run_skinny_small.sh): qkv and o (32-48 MB) through skinny_gemm, MBU 77.6 -> 79.7%; every projection
# through it, 73.9% (gate_up, down and lm_head stream at ~98% of the copy rate under cuBLAS); without PDL, 76.6%.
# Below 16 MB cuBLAS's split-K kernels fill SMs that one pass of skinny_gemm leaves idle.
# SPMD_SKINNY_GEMM=0 sends everything to cuBLAS; SPMD_SKINNY_MIN_MB and SPMD_SKINNY_MAX_MB move the bounds (A/B runs,
# and checks of small models through skinny_gemm).
# gate_up and down stay on cuBLAS, with the SiLU kernel between them. Tried in session 9 (H200, Llama-3-8B bs1 @1k,
# 4.5 ms; commit fb46399, tests/gpu/run_down_partials.sh): down as one skinny_gemm launch with K split over the SMs,
# its fp32 partial sums added up by the next RMSNorm, 4.5-4.6 ms over five tile / split choices (cuBLAS and its
# split-K reduce cost no more); with silu(gate) * up formed inside that loop too, 5.7-8.6 ms (the loop no longer
# streams the weight at full rate). Leaving the SiLU kernel out altogether (an upper bound, wrong outputs) gave
# 4.4 ms; leaving both RMSNorms out, no change: PDL hides a Triton kernel between Triton kernels, not between cuBLAS.
SKINNY_MIN_WEIGHT_BYTES = float(os.environ.get("SPMD_SKINNY_MIN_MB", "16")) * (1 << 20)
SKINNY_MAX_WEIGHT_BYTES = float(os.environ.get("SPMD_SKINNY_MAX_MB", "64")) * (1 << 20)
SKINNY_GEMM_ON = os.environ.get("SPMD_SKINNY_GEMM", "1") == "1"


def takes_skinny_gemm(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether x @ weight^T goes to skinny_gemm: a decode-sized product (at most 16 rows) of a mid-sized 16-bit
    weight on a GPU that runs kernels with programmatic dependent launch (see SKINNY_MIN_WEIGHT_BYTES)."""
    return (SKINNY_GEMM_ON and x.is_cuda and weight.dtype != torch.float32 and pdl_enabled(x.device)
            and SKINNY_MIN_WEIGHT_BYTES <= weight.numel() * weight.element_size() <= SKINNY_MAX_WEIGHT_BYTES
            and skinny_gemm_supports(x, weight))


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, or skinny_gemm where takes_skinny_gemm says so."""
    if takes_skinny_gemm(x, weight):
        return skinny_gemm(x, weight, bias)
    return F.linear(x, weight, bias)


class LinearBase(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool, shard: Shard, shard_dim: int | None):
        super().__init__()
        self.shard = shard
        self.shard_dim = shard_dim  # 0: output features split (column), 1: input features split (row)
        self.weight = nn.Parameter(torch.empty(out_features, in_features), requires_grad=False)
        self.weight.weight_loader = self.weight_loader
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features), requires_grad=False)
            self.bias.weight_loader = self.weight_loader
        else:
            self.register_parameter("bias", None)

    def weight_loader(self, param: nn.Parameter, src: CheckpointTensor, shard_id=None) -> None:
        dim = self.shard_dim
        if dim is None or (param.dim() == 1 and dim == 1):
            copy_checked(param, src.read(), src.name)  # replicated weight, or a row-parallel bias
            return
        n = param.shape[dim]
        copy_checked(param, src.narrow(dim, self.shard.rank * n, n), src.name)


class ReplicatedLinear(LinearBase):
    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__(in_features, out_features, bias, Shard(), None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


class ColumnParallelLinear(LinearBase):
    """Output features split over the shard; the output stays split (no collective)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, shard: Shard):
        super().__init__(in_features, shard.split(out_features, "output features"), bias, shard, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)

    def forward_rope_store(self, x: torch.Tensor, rope: RopeStore) -> torch.Tensor | None:
        """This qkv projection in one skinny_gemm launch whose epilogue rotates q and k and stores k and v into the
        caches (kernels/qkv_rope_store.py), or None where skinny_gemm or the epilogue does not take the shapes
        (the caller projects, rotates and stores itself)."""
        if takes_skinny_gemm(x, self.weight) and qkv_rope_store_supports(x.reshape(-1, x.shape[-1]), self.weight,
                                                                         rope):
            return qkv_rope_store(x, self.weight, self.bias, rope)
        return None


class MergedColumnParallelLinear(ColumnParallelLinear):
    """Several column-parallel projections stored as one (gate and up); shard_id picks the part."""

    def __init__(self, in_features: int, output_sizes: list[int], bias: bool, shard: Shard):
        self.output_sizes = output_sizes
        super().__init__(in_features, sum(output_sizes), bias, shard)
        for p in self.parameters():
            p.expected_loads = len(output_sizes)  # one checkpoint tensor per part

    def weight_loader(self, param: nn.Parameter, src: CheckpointTensor, shard_id: int) -> None:
        local = [s // self.shard.size for s in self.output_sizes]
        offset = sum(local[:shard_id])
        n = local[shard_id]
        copy_checked(param.data.narrow(0, offset, n), src.narrow(0, self.shard.rank * n, n), src.name)


class QKVParallelLinear(ColumnParallelLinear):
    """q, k and v projections in one matrix; each rank holds its heads of each (GQA: fewer kv heads)."""

    def __init__(self, hidden_size: int, head_dim: int, num_heads: int, num_kv_heads: int, bias: bool,
                 shard: Shard):
        self.head_dim = head_dim
        self.num_heads = shard.split(num_heads, "num_attention_heads")
        self.num_kv_heads = shard.split(num_kv_heads, "num_key_value_heads")
        super().__init__(hidden_size, (num_heads + 2 * num_kv_heads) * head_dim, bias, shard)
        for p in self.parameters():
            p.expected_loads = 3  # q, k and v

    def weight_loader(self, param: nn.Parameter, src: CheckpointTensor, shard_id: str) -> None:
        q = self.num_heads * self.head_dim
        kv = self.num_kv_heads * self.head_dim
        offset, n = {"q": (0, q), "k": (q, kv), "v": (q + kv, kv)}[shard_id]
        copy_checked(param.data.narrow(0, offset, n), src.narrow(0, self.shard.rank * n, n), src.name)


class RowParallelLinear(LinearBase):
    """Input features split over the shard; partial outputs are summed over the shard's group."""

    def __init__(self, in_features: int, out_features: int, bias: bool, shard: Shard, reduce: bool = True):
        super().__init__(shard.split(in_features, "input features"), out_features, bias, shard, 1)
        self.reduce = reduce

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = linear(x, self.weight)
        if self.reduce:
            y = all_reduce(y, self.shard)
        if self.bias is not None and (self.reduce or self.shard.rank == 0):
            # Once: after the reduction, or (partial sums reduced later, DP attention) on one rank only.
            y = y + self.bias
        return y
