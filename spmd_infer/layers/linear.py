"""Tensor-parallel linear layers, in the model's dtype or in block-scaled float8; each parameter's weight_loader reads
only this rank's slice from disk."""

from __future__ import annotations

import importlib
import os
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from spmd_kernels.block_fp8 import dequantize_blocks, quantize_blocks
from spmd_kernels.fp8_linear import fp8_linear
from spmd_kernels.pdl import pdl_enabled
from spmd_kernels.qkv_rope_store import qkv_rope_store, qkv_rope_store_supports
from spmd_kernels.qkv_epilogue import RopeStore
from spmd_kernels.skinny_gemm import skinny_gemm, skinny_gemm_supports, skinny_split_k

from ..parallel.comm import PartialSums, Shard, reduced_or_partial
from .fp8_checkpoint import float8_slice
from .weights import CheckpointTensor, copy_checked

# The module, not the function the package re-exports under its name: its switches are read at each call.
fp8_linear_module = importlib.import_module("spmd_kernels.fp8_linear")
# Decode-sized products (at most 16 rows) of weights between these sizes go to skinny_gemm instead of cuBLAS, when
# kernels use programmatic dependent launch (kernels/pdl.py): skinny_gemm fetches its first weight tile while the
# previous kernel drains, which cuBLAS cannot. Measured in Llama-3-8B bs1 @1k decode on an H200 (CUDA graphs,
# tests/gpu/run_skinny_small.sh): qkv and o (32-48 MB) through skinny_gemm, MBU 77.6 -> 79.7%; every projection
# through it, 73.9% (gate_up, down and lm_head stream at ~98% of the copy rate under cuBLAS); without PDL, 76.6%.
# Below 16 MB cuBLAS's split-K kernels fill SMs that one pass of skinny_gemm leaves idle, so there skinny_gemm splits
# K over programs too (skinny_split_k; SPMD_SKINNY_SPLIT=0 turns it off). Alone it beats cuBLAS by 0.4-9 us a product
# at 1-16 rows on Qwen3-0.6B's 2-12 MB projections (tests/gpu/bench_small_gemm.py --skinny, H200: o at 1 row 3.8
# against 12.5 us, down 4.6 against 6.7, qkv and gate_up ~0.5); in the engine (tests/gpu/run_skinny_waves.sh, H200)
# Qwen3-0.6B decode @600 bs1 1.4 -> 1.1 ms, bs16 1.7 -> 1.5 ms, its check against transformers unchanged.
# SPMD_SKINNY_GEMM=0 sends everything to cuBLAS; SPMD_SKINNY_MIN_MB and SPMD_SKINNY_MAX_MB move the bounds (A/B runs,
# and checks of small models through skinny_gemm).
# Weights above 64 MB (Llama-3-8B's gate_up and down) stay on cuBLAS, with the SiLU kernel between them. Tried in
# session 9 (H200, Llama-3-8B bs1 @1k, 4.5 ms; commit fb46399, tests/gpu/run_down_partials.sh): down as one skinny_gemm
# launch with K split over the SMs, its fp32 partial sums added up by the next RMSNorm, 4.5-4.6 ms over five tile /
# split choices (cuBLAS and its split-K reduce cost no more); with silu(gate) * up formed inside that loop too, 5.7-8.6
# ms (the loop no longer streams the weight at full rate). Leaving the SiLU kernel out altogether (an upper bound, wrong
# outputs) gave 4.4 ms; leaving both RMSNorms out, no change: PDL hides a Triton kernel between Triton kernels, not
# between cuBLAS.
SKINNY_MIN_WEIGHT_BYTES = float(os.environ.get("SPMD_SKINNY_MIN_MB", "16")) * (1 << 20)
SKINNY_MAX_WEIGHT_BYTES = float(os.environ.get("SPMD_SKINNY_MAX_MB", "64")) * (1 << 20)
SKINNY_GEMM_ON = os.environ.get("SPMD_SKINNY_GEMM", "1") == "1"
SKINNY_SPLIT = os.environ.get("SPMD_SKINNY_SPLIT", "1") == "1"


class RoundedRows(NamedTuple):
    """A float8 layer's input rounded to float8 already by the kernel that produced it (the SiLU kernel's
    silu_and_mul_quantized), saving the rounding's own launch: bit for bit what fp8_linear's rounding would give
    (takes_rounded_inputs)."""

    values: torch.Tensor  # [T, K] float8 e4m3
    scales: torch.Tensor  # [T, ceil(K / fp8_block[1])] float32, token-major
    dtype: torch.dtype  # of the unrounded rows: the layer's output dtype


def _skinny_device_ok(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """skinny_gemm on, a 16-bit weight, and a GPU that runs kernels with programmatic dependent launch."""
    return SKINNY_GEMM_ON and x.is_cuda and weight.dtype != torch.float32 and pdl_enabled(x.device)


def _skinny_weight_bytes(x: torch.Tensor, weight: torch.Tensor) -> int | None:
    """The weight's bytes where skinny_gemm could take x @ weight^T (a decode-sized product, at most 16 rows, on a
    GPU that runs it: _skinny_device_ok), else None; its size class decides whether it does (SKINNY_*_WEIGHT_BYTES)."""
    if _skinny_device_ok(x, weight) and skinny_gemm_supports(x, weight):
        return weight.numel() * weight.element_size()
    return None


def takes_skinny_gemm(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether x @ weight^T goes to skinny_gemm unsplit: a decode-sized product (at most 16 rows) of a mid-sized
    16-bit weight on a GPU that runs kernels with programmatic dependent launch (see SKINNY_MIN_WEIGHT_BYTES)."""
    size = _skinny_weight_bytes(x, weight)
    return size is not None and SKINNY_MIN_WEIGHT_BYTES <= size <= SKINNY_MAX_WEIGHT_BYTES


def skinny_splits(x: torch.Tensor, weight: torch.Tensor) -> int:
    """Programs a tile's K is split over when x @ weight^T goes to skinny_gemm: 1 for a mid-sized weight
    (takes_skinny_gemm), skinny_split_k's count for a smaller one (SKINNY_SPLIT); 0 where F.linear takes it."""
    size = _skinny_weight_bytes(x, weight)
    if size is None or size > SKINNY_MAX_WEIGHT_BYTES:
        return 0
    if size >= SKINNY_MIN_WEIGHT_BYTES:
        return 1
    return skinny_split_k(*weight.shape, x.device, weight.element_size()) if SKINNY_SPLIT else 0


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, or skinny_gemm where skinny_splits says so."""
    splits = skinny_splits(x, weight)
    if splits:
        return skinny_gemm(x, weight, bias, splits=splits)
    return F.linear(x, weight, bias)


class LinearBase(nn.Module):
    keeps_dtype = False
    """True for a layer whose weight is read by something other than its forward (MLA's kv_b_proj, absorbed into
    the attention): never held in float8."""

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
        self.fp8_block: tuple[int, int] | None = None  # hold_in_float8
        self.register_parameter("weight_scale", None)

    def output_parts(self) -> list[int]:
        """This rank's output features of each separately loaded part, in order (one part unless merged)."""
        return [self.weight.shape[0]]

    def part_is_split(self, index: int) -> bool:
        """Whether this rank holds a slice of part `index`'s output features (a column split over two or more ranks),
        not the whole of it."""
        return self.shard_dim == 0 and self.shard.size > 1

    def takes_float8(self, block: tuple[int, int]) -> bool:
        """Whether this rank's weight can be held in float8 with (rows, columns) blocks: every part starts on a
        block row (a part may end mid-block only where it is the weight's last and unsplit, as DeepSeek's 576-row
        kv_a_proj_with_mqa), and a split of the input features falls on a block column."""
        rows, cols = block
        parts = self.output_parts()
        last_ok = parts[-1] % rows == 0 or not self.part_is_split(len(parts) - 1)
        rows_ok = last_ok and all(p % rows == 0 for p in parts[:-1])
        cols_ok = not (self.shard_dim == 1 and self.shard.size > 1) or self.weight.shape[1] % cols == 0
        return not self.keeps_dtype and rows_ok and cols_ok

    def hold_in_float8(self, block: tuple[int, int]) -> None:
        """Replace the (unloaded) weight by a float8 e4m3 one with a float32 scale per block (weight_scale), filled
        by the same weight_loader: a float8 checkpoint's bytes as stored, a bf16 one's quantized as they load."""
        out_features, in_features = self.weight.shape
        self._replace_weight(torch.float8_e4m3fn)
        self.weight_scale = nn.Parameter(torch.empty(-(-out_features // block[0]), -(-in_features // block[1]),
                                                     dtype=torch.float32, device=self.weight.device),
                                         requires_grad=False)
        self.weight_scale.expected_loads = 0  # filled with the weight, not named in the checkpoint
        self.fp8_block = block

    def hold_in_dtype(self, dtype: torch.dtype) -> None:
        """Undo hold_in_float8 before loading: the weight in `dtype` again (a float8 checkpoint's parts dequantized
        as they load)."""
        self._replace_weight(dtype)
        self.weight_scale = None
        self.fp8_block = None

    def _replace_weight(self, dtype: torch.dtype) -> None:
        """A new (unloaded) weight of the same shape in `dtype`, loaded as the old one would have been."""
        loads = getattr(self.weight, "expected_loads", 1)
        self.weight = nn.Parameter(torch.empty(self.weight.shape, dtype=dtype, device=self.weight.device),
                                   requires_grad=False)
        self.weight.weight_loader = self.weight_loader
        self.weight.expected_loads = loads

    @torch.no_grad()
    def init_random(self, generator: torch.Generator) -> None:
        """Random float8 weights (the benchmark's): normal values, std 1 / sqrt(fan_in), quantized in blocks."""
        values = torch.empty(self.weight.shape, device=self.weight.device).normal_(
            0.0, self.weight.shape[1] ** -0.5, generator=generator)
        self.weight.data, self.weight_scale.data = quantize_blocks(values, self.fp8_block)

    def takes_rounded_inputs(self, x: torch.Tensor) -> bool:
        """Whether the kernel producing this layer's input x (in the model's dtype) should hand it over rounded to
        float8 (RoundedRows): float8 weights on CUDA meeting float8 activations, except where cuBLAS takes the
        product (prefill: it wants the scales group-major, and there the rounding's launch is ~1% of the GEMM)."""
        kernels = fp8_linear_module
        return (self.fp8_block is not None and x.is_cuda and kernels.DEFAULT_ACTIVATIONS == "fp8"
                and kernels.takes_fp8_activations(self.fp8_block)
                and not kernels.takes_cublas(x.numel() // x.shape[-1], *self.weight.shape, self.fp8_block, x.device,
                                             x.dtype))

    def project(self, x: torch.Tensor | RoundedRows, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x @ weight^T (+ bias): float8 weights through fp8_linear on CUDA (dequantized on the CPU: the model's
        values exactly), others through `linear`; x rounded already (RoundedRows) as it is."""
        if isinstance(x, RoundedRows):
            return fp8_linear(x.values, self.weight, self.weight_scale, self.fp8_block, bias, x_scale=x.scales,
                              out_dtype=x.dtype)
        if self.fp8_block is None:
            return linear(x, self.weight, bias)
        if x.is_cuda:
            return fp8_linear(x, self.weight, self.weight_scale, self.fp8_block, bias)
        return F.linear(x, dequantize_blocks(self.weight, self.weight_scale, self.fp8_block).to(x.dtype), bias)

    def weight_loader(self, param: nn.Parameter, src: CheckpointTensor, shard_id=None) -> None:
        dim = self.shard_dim
        if dim is None or (param.dim() == 1 and dim == 1):
            # A replicated weight, or a row-parallel bias: whole (its shape checked against the checkpoint's).
            self._load_slice(param, src, None, 0, 0, src.shape[0])
            return
        n = param.shape[dim]
        self._load_slice(param, src, 0, dim, self.shard.rank * n, n)

    def _load_slice(self, param: nn.Parameter, src: CheckpointTensor, offset: int | None, dim: int, start: int,
                    length: int) -> None:
        """Copy src's [start, start + length) along `dim` into param: into its rows from `offset` when dim is 0, the
        whole of it when dim is 1 (input features split) or offset is None. A float8 weight takes its block scales
        alongside."""
        whole = offset is None or dim == 1
        if param is not self.weight or self.fp8_block is None:
            dst = param.data if whole else param.data.narrow(0, offset, length)
            copy_checked(dst, src.narrow(dim, start, length), src.name)
            return
        weight, scale = float8_slice(src, dim, start, length, self.fp8_block, param.device)
        if whole:
            copy_checked(param.data, weight, src.name)
            copy_checked(self.weight_scale.data, scale, src.name + " (block scales)")
        else:
            copy_checked(param.data.narrow(0, offset, length), weight, src.name)
            copy_checked(self.weight_scale.data.narrow(0, offset // self.fp8_block[0], scale.shape[0]), scale,
                         src.name + " (block scales)")


def keep_unquantized_linears(model: nn.Module, unquantized: set[str], dtype: torch.dtype) -> int:
    """Linear layers held in float8 whose checkpoint weight (any part of it, for merged ones) is among
    `unquantized` (loader.unquantized_weights) go back to `dtype` before loading, so that a float8 release's
    choice to leave a layer unquantized is kept; returns how many."""
    kept = set()
    for name in unquantized:
        ours, _ = model.map_checkpoint_name(name)
        try:
            layer = model.get_submodule(ours.removesuffix(".weight")) if ours.endswith(".weight") else None
        except AttributeError:  # a tensor with no module here (skipped by the loader, or an error it reports)
            layer = None
        if isinstance(layer, LinearBase) and layer.fp8_block is not None:
            layer.hold_in_dtype(dtype)
            kept.add(ours)
    return len(kept)


def hold_linears_in_float8(model: nn.Module, block: tuple[int, int]) -> None:
    """Every linear layer of `model` that can (LinearBase.takes_float8) held in float8 with `block` blocks, before
    loading. The LM head, embeddings and MoE routers are not linear layers here, and stay in the model's dtype, as
    float8 releases store them."""
    for m in model.modules():
        if isinstance(m, LinearBase) and m.takes_float8(block):
            m.hold_in_float8(block)


def fp8_linear_counts(model: nn.Module) -> tuple[int, int]:
    """(linear layers held in float8, linear layers) of `model`."""
    layers = [m for m in model.modules() if isinstance(m, LinearBase)]
    return sum(m.fp8_block is not None for m in layers), len(layers)


class ReplicatedLinear(LinearBase):
    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__(in_features, out_features, bias, Shard(), None)

    def forward(self, x: torch.Tensor | RoundedRows) -> torch.Tensor:
        return self.project(x, self.bias)


class ColumnParallelLinear(LinearBase):
    """Output features split over the shard; the output stays split (no collective)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, shard: Shard):
        super().__init__(in_features, shard.split(out_features, "output features"), bias, shard, 0)

    def forward(self, x: torch.Tensor | RoundedRows) -> torch.Tensor:
        return self.project(x, self.bias)

    def forward_rope_store(self, x: torch.Tensor, rope: RopeStore) -> torch.Tensor | None:
        """This qkv projection in one skinny_gemm launch whose epilogue rotates q and k and stores k and v into the
        caches (kernels/qkv_rope_store.py), or None where skinny_gemm or the epilogue does not take the shapes
        (the caller projects, rotates and stores itself)."""
        if takes_skinny_gemm(x, self.weight) and qkv_rope_store_supports(x.reshape(-1, x.shape[-1]), self.weight,
                                                                         rope):
            return qkv_rope_store(x, self.weight, self.bias, rope)
        return None


class MergedLinear(LinearBase):
    """Several projections of one input stored as one weight, each either split over the shard by output features or
    replicated: gate and up (both split), DeepSeek's q_proj (split) or q_a_proj (replicated) beside
    kv_a_proj_with_mqa (replicated). One GEMM launch where there were several; shard_id picks the part; a bias
    covers every part, zero where a part has none in the checkpoint."""

    def __init__(self, in_features: int, parts: list[tuple[str, int, bool, bool]], shard: Shard):
        """parts: (name for errors, output features, split over the shard, has a bias) each, in order."""
        self.part_sizes = [shard.split(n, f"{name} output features") if split else n for name, n, split, _ in parts]
        self.split_parts = [split for _, _, split, _ in parts]
        super().__init__(in_features, sum(self.part_sizes), any(b for *_, b in parts), shard, 0)
        self.weight.expected_loads = len(parts)
        if self.bias is not None:
            self.bias.data.zero_()  # parts without a bias in the checkpoint add nothing
            self.bias.expected_loads = sum(b for *_, b in parts)

    def output_parts(self) -> list[int]:
        return list(self.part_sizes)

    def part_is_split(self, index: int) -> bool:
        return self.split_parts[index] and self.shard.size > 1

    def weight_loader(self, param: nn.Parameter, src: CheckpointTensor, shard_id: int) -> None:
        n = self.part_sizes[shard_id]
        start = self.shard.rank * n if self.split_parts[shard_id] else 0
        self._load_slice(param, src, sum(self.part_sizes[:shard_id]), 0, start, n)

    def forward(self, x: torch.Tensor | RoundedRows) -> torch.Tensor:
        return self.project(x, self.bias)


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

    def output_parts(self) -> list[int]:
        kv = self.num_kv_heads * self.head_dim
        return [self.num_heads * self.head_dim, kv, kv]

    def weight_loader(self, param: nn.Parameter, src: CheckpointTensor, shard_id: str) -> None:
        q, kv, _ = self.output_parts()
        offset, n = {"q": (0, q), "k": (q, kv), "v": (q + kv, kv)}[shard_id]
        self._load_slice(param, src, offset, 0, self.shard.rank * n, n)


class RowParallelLinear(LinearBase):
    """Input features split over the shard; partial outputs are summed over the shard's group."""

    def __init__(self, in_features: int, out_features: int, bias: bool, shard: Shard, reduce: bool = True):
        super().__init__(shard.split(in_features, "input features"), out_features, bias, shard, 1)
        self.reduce = reduce
        # Set where the next op on this output is an RMSNorm (the decoder layer's defer_reduce_to_norm): the output
        # then leaves as PartialSums, summed by that norm, in one kernel with it where the group can.
        self.reduce_in_norm = False

    def forward(self, x: torch.Tensor | RoundedRows) -> torch.Tensor | PartialSums:
        y = self.project(x, None)
        if self.reduce:  # (a bias is added after the sum: such a layer sums here)
            y = reduced_or_partial(y, self.shard, self.reduce_in_norm and self.bias is None)
            if isinstance(y, PartialSums):
                return y
        if self.bias is not None and (self.reduce or self.shard.rank == 0):
            # Once: after the reduction, or (partial sums reduced later, DP attention) on one rank only.
            y = y + self.bias
        return y
