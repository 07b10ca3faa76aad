"""Tensor-parallel linear layers; each parameter's weight_loader reads only this rank's slice from disk."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from spmd_kernels.pdl import pdl_enabled
from spmd_kernels.qkv_rope_store import qkv_rope_store, qkv_rope_store_supports
from spmd_kernels.qkv_epilogue import RopeStore
from spmd_kernels.skinny_gemm import down_partials_config, skinny_gemm, skinny_gemm_partials, skinny_gemm_supports

from ..parallel.comm import Shard, all_reduce
from .activation import silu_and_mul
from .weights import CheckpointTensor, copy_checked

# Decode-sized products (at most 16 rows) of weights between these sizes go to skinny_gemm instead of cuBLAS, when
# kernels use programmatic dependent launch (kernels/pdl.py): skinny_gemm fetches its first weight tile while the
# previous kernel drains, which cuBLAS cannot. Measured in Llama-3-8B bs1 @1k decode on an H200 (CUDA graphs,
# tests/gpu/run_skinny_small.sh): qkv and o (32-48 MB) through skinny_gemm, MBU 77.6 -> 79.7%; every projection
# through it, 73.9% (gate_up, down and lm_head stream at ~98% of the copy rate under cuBLAS); without PDL, 76.6%.
# Below 16 MB cuBLAS's split-K kernels fill SMs that one pass of skinny_gemm leaves idle.
# SPMD_SKINNY_GEMM=0 sends everything to cuBLAS; SPMD_SKINNY_MIN_MB and SPMD_SKINNY_MAX_MB move the bounds (A/B runs,
# and checks of small models through skinny_gemm).
SKINNY_MIN_WEIGHT_BYTES = float(os.environ.get("SPMD_SKINNY_MIN_MB", "16")) * (1 << 20)
SKINNY_MAX_WEIGHT_BYTES = float(os.environ.get("SPMD_SKINNY_MAX_MB", "64")) * (1 << 20)
SKINNY_GEMM_ON = os.environ.get("SPMD_SKINNY_GEMM", "1") == "1"


def takes_skinny_gemm(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether x @ weight^T goes to skinny_gemm: a decode-sized product (at most 16 rows) of a mid-sized 16-bit
    weight on a GPU that runs kernels with programmatic dependent launch (see SKINNY_MIN_WEIGHT_BYTES)."""
    return (SKINNY_GEMM_ON and x.is_cuda and weight.dtype != torch.float32 and pdl_enabled(x.device)
            and SKINNY_MIN_WEIGHT_BYTES <= weight.numel() * weight.element_size() <= SKINNY_MAX_WEIGHT_BYTES
            and skinny_gemm_supports(x, weight))


# A dense MLP's down projection at decode on one rank as one skinny_gemm launch with K split over the SMs, its fp32
# partial sums added up by the next RMSNorm (skinny_gemm_partials, rms_norm_partials), instead of cuBLAS and its
# split-K reduce kernel, which programmatic dependent launch cannot overlap. SPMD_DOWN_PARTIALS=1 turns it on;
# SPMD_DOWN_SILU_IN_KERNEL=1 also forms silu(gate) * up inside its loop instead of in the SiLU kernel.
# Measured in Llama-3-8B bs1 @1k decode on an H200 (tests/gpu/run_gated_down.sh), against 4.5 ms off: SiLU in the
# loop 5.7-8.6 ms over five tile / split choices (the loop no longer streams the weight at full rate). Without the
# SiLU kernel at all (an upper bound, wrong outputs) the step is 4.4 ms.
DOWN_PARTIALS_ON = os.environ.get("SPMD_DOWN_PARTIALS", "0") == "1"
SILU_IN_DOWN_KERNEL = os.environ.get("SPMD_DOWN_SILU_IN_KERNEL", "0") == "1"


def down_partials_supports(gate_up: torch.Tensor, down: "RowParallelLinear") -> bool:
    """Whether skinny_gemm_partials computes down(silu_and_mul(gate_up)) for this layer: one rank (the partial
    sums go to the next RMSNorm, not to an all-reduce), no bias, skinny_gemm's operands, and K split evenly."""
    weight = down.weight
    n, k = weight.shape
    if down.shard.size != 1 or down.bias is not None or gate_up.shape[-1] != 2 * k:
        return False
    (_, block_k, _, _), splits = down_partials_config(n, k, weight.element_size(), _num_sms(gate_up.device))
    return skinny_gemm_supports(gate_up[..., :k], weight) and k % (block_k * splits) == 0


def takes_down_partials(gate_up: torch.Tensor, down: "RowParallelLinear") -> bool:
    """Whether this decode-sized down projection leaves partial sums (see DOWN_PARTIALS_ON): on a GPU whose kernels
    use programmatic dependent launch, in 16-bit weights."""
    return (DOWN_PARTIALS_ON and gate_up.is_cuda and down.weight.dtype != torch.float32
            and pdl_enabled(gate_up.device) and down_partials_supports(gate_up, down))


def _num_sms(device: torch.device) -> int:
    if device.type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


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

    def forward_partials(self, gate_up: torch.Tensor) -> torch.Tensor | None:
        """This layer over silu_and_mul(gate_up) as fp32 partial sums over K splits [splits, rows, out], in one
        launch (SILU_IN_DOWN_KERNEL) or after the SiLU kernel, for the next RMSNorm to add up (rms_norm_partials);
        None where takes_down_partials says no (the caller runs silu_and_mul, then forward)."""
        if not takes_down_partials(gate_up, self):
            return None
        n, k = self.weight.shape
        config, splits = down_partials_config(n, k, self.weight.element_size(), _num_sms(gate_up.device))
        if SILU_IN_DOWN_KERNEL:
            return skinny_gemm_partials(gate_up, self.weight, splits, config, gated=True)
        return skinny_gemm_partials(silu_and_mul(gate_up), self.weight, splits, config)
