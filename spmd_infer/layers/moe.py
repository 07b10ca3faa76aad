"""Mixture-of-experts: top-k routing (softmax, group-limited, sigmoid + correction bias) and sharded experts.

Experts are split over the MLP shard either whole (ep: each rank owns num_experts/n experts and reads
only those from disk) or by intermediate size (tp: every rank holds a slice of every expert). Every
rank routes all tokens identically (the router is replicated) and adds up its local experts'
contributions; the partial sums are reduced over the shard afterwards. Experts are held in the model's
dtype, or in float8 e4m3 with a float32 scale per weight block (model.expert_dtype=fp8). On CUDA float8 experts
meet float8 activations (fused_moe's default); the CPU path computes the dequantized model exactly.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spmd_kernels import fused_moe, fused_moe_ref, moe_route, moe_route_ref
from spmd_kernels.block_fp8 import dequantize_blocks, quantize_blocks
from spmd_kernels.fused_moe import gated_add_ref
from spmd_kernels.moe_route import ROUTE_KERNEL, ROUTER_FUSED, moe_route_hidden, router_fits

from ..parallel.comm import Shard, reduced_or_partial
from ..parallel.dims import ConfigError
from .activation import silu_and_mul
from .fp8_checkpoint import float8_slice
from .weights import CheckpointTensor, copy_checked

DEFAULT_FP8_BLOCK = (128, 128)  # DeepSeek-V3's and Qwen3's float8 releases
# SPMD_MOE_SHARED_IN_SUM=1: on the GPU, where the shared MLP runs on its own (past SHARED_FUSED_TOKENS, or experts
# split whole over ranks), its output is added (and Qwen2-MoE's gated) inside fused_moe's last kernel instead of by
# PyTorch ops after it (H200 decode @1k, run_moe_route.sh: Qwen1.5-MoE bs1 2.5 against
# 2.8 ms a step, bs64 11.7 against 11.9; DeepSeek-V2-Lite about even); 0 adds it after.
SHARED_IN_SUM = os.environ.get("SPMD_MOE_SHARED_IN_SUM", "1") == "1"
# SPMD_MOE_SHARED_FUSED_TOKENS=N: at up to N tokens a step, shared experts run on the GPU inside fused_moe as more
# experts (every token's last slots; their weights read in place, no copy), their tiles filling a decode grid that
# the routed experts leave under one wave, their three to four launches saved. H200 decode @1k, on against off
# (run_moe_shared_fused.sh, run_moe_shared_fused_limit.sh): Qwen1.5-MoE bs1 / bs8 / bs64 / bs128 2.1 / 4.8 / 11.6 /
# 15.2 against 2.4 / 5.1 / 12.0 / 15.4 ms a step; DeepSeek-V2-Lite 2.9 / 6.3 / 10.9 / 11.8 against 3.1 / 6.5 / 11.3
# / 12.0; at bs256 about even (22.8 against 22.5, 13.3 against 13.6). 0: the shared MLP always runs on its own.
SHARED_FUSED_TOKENS = int(os.environ.get("SPMD_MOE_SHARED_FUSED_TOKENS", "128"))
# The CPU computes the shared MLP as transformers does (the float32 oracle); tests set this to run the fused
# kernels' reference there instead.
SHARED_FUSED_ON_CPU = False


@dataclass(frozen=True)
class RoutingConfig:
    top_k: int
    scoring: str = "softmax"  # softmax | sigmoid
    renormalize: bool = False  # divide the top-k weights by their sum (norm_topk_prob)
    num_groups: int = 1  # group-limited routing: pick topk_groups groups first
    topk_groups: int = 1
    group_score: str = "max"  # max (DeepSeek-V2) | top2_sum (DeepSeek-V3 noaux_tc)
    scaling: float = 1.0  # routed_scaling_factor
    correction_bias: bool = False  # DeepSeek-V3's e_score_correction_bias, used for choice only
    float32_router: bool = False  # router matmul in float32 (DeepSeek) rather than the activation dtype


def route(logits: torch.Tensor, cfg: RoutingConfig, bias: torch.Tensor | None, num_shared: int = 0,
          shared_gate: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Router logits [T, E] -> (weights [T, k] float32, expert ids [T, k]), plus `num_shared` shared slots
    (moe_route's): one Triton kernel on the GPU (kernels/moe_route.py, unless SPMD_MOE_ROUTE_KERNEL=0), its
    PyTorch reference elsewhere."""
    route_fn = moe_route if logits.is_cuda and ROUTE_KERNEL else moe_route_ref
    return route_fn(logits, cfg.top_k, **_routing_args(cfg, bias, num_shared, shared_gate))


def route_hidden(x: torch.Tensor, router_weight: torch.Tensor, cfg: RoutingConfig, bias: torch.Tensor | None,
                 num_shared: int = 0, shared_gate: tuple[torch.Tensor, torch.Tensor] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`route` of the router's product x @ router_weight^T (in float32 for DeepSeek's router): on the GPU at
    decode sizes, for a router without group-limited choice, one launch computes both (moe_route_hidden, unless
    SPMD_MOE_ROUTER_FUSED=0). Its last program routes the rows together, each over every group in turn: with
    DeepSeek-V3's groups in bf16, 11.8 / 19.0 / 40.2 us at 1 / 8 / 16 tokens against ~10 for F.linear and moe_route
    (tests/gpu/time_moe_router.py, H200)."""
    if (x.is_cuda and ROUTE_KERNEL and ROUTER_FUSED and cfg.num_groups == 1
            and router_fits(x, router_weight)):
        return moe_route_hidden(x, router_weight, cfg.top_k, **_routing_args(cfg, bias, num_shared, shared_gate))
    return route(F.linear(x.float() if cfg.float32_router else x, router_weight), cfg, bias, num_shared,
                 shared_gate)


def _routing_args(cfg: RoutingConfig, bias: torch.Tensor | None, num_shared: int,
                  shared_gate: tuple[torch.Tensor, torch.Tensor] | None) -> dict:
    return dict(sigmoid=cfg.scoring == "sigmoid", bias=bias, renormalize=cfg.renormalize, num_groups=cfg.num_groups,
                topk_groups=cfg.topk_groups, group_top2=cfg.group_score == "top2_sum", scaling=cfg.scaling,
                num_shared=num_shared, shared_gate=shared_gate)


@dataclass(frozen=True)
class SharedSlices:
    """A shared MLP handed to FusedMoE to run as `count` more experts of its intermediate size (fused_moe's
    shared_w13 / shared_w2, moe_route's num_shared slots)."""
    w13: torch.Tensor  # [2L, H]: the MLP's gate rows, then its up rows (its gate_up_proj weight)
    w2: torch.Tensor  # [H, L]: its down_proj weight
    count: int  # L / the experts' intermediate size
    gate: torch.Tensor | None = None  # [H]: each token's slots weigh sigmoid(x . gate) (Qwen2-MoE), else 1


class FusedMoE(nn.Module):
    """Routed experts with SiLU-gated MLPs; `reduce=False` leaves partial sums for DPGatherScatter."""


    def __init__(self, num_experts: int, hidden: int, intermediate: int, routing: RoutingConfig, shard: Shard,
                 mode: str, reduce: bool = True, fp8_block: tuple[int, int] | None = None):
        """`fp8_block`: keep the experts in float8 e4m3 with a float32 scale per block of at most these (rows,
        columns), narrowed to powers of two that put this rank's shard edges on block edges (fp8_resident_block)."""
        super().__init__()
        self.num_experts, self.routing, self.shard, self.mode, self.reduce = num_experts, routing, shard, mode, reduce
        self.reduce_in_norm = False  # defer_reduce_to_norm
        if mode == "ep":
            self.num_local = shard.split(num_experts, "number of routed experts")
            self.first_expert = shard.rank * self.num_local
            self.local_intermediate = intermediate
        else:
            self.num_local, self.first_expert = num_experts, 0
            self.local_intermediate = shard.split(intermediate, "moe_intermediate_size")
        router_dtype = torch.float32 if routing.float32_router else None
        self.gate = nn.Parameter(torch.empty(num_experts, hidden, dtype=router_dtype), requires_grad=False)
        self.gate.weight_loader = self._load_whole
        if routing.correction_bias:
            self.e_score_correction_bias = nn.Parameter(torch.zeros(num_experts, dtype=torch.float32),
                                                        requires_grad=False)
            self.e_score_correction_bias.weight_loader = self._load_whole
        else:
            self.e_score_correction_bias = None
        i = self.local_intermediate
        self.fp8_block = fp8_resident_block(fp8_block, i, mode) if fp8_block else None
        weight_dtype = torch.float8_e4m3fn if self.fp8_block else None
        self.w13 = nn.Parameter(torch.empty(self.num_local, 2 * i, hidden, dtype=weight_dtype), requires_grad=False)
        self.w2 = nn.Parameter(torch.empty(self.num_local, hidden, i, dtype=weight_dtype), requires_grad=False)
        for p, parts in ((self.w13, 2), (self.w2, 1)):
            p.weight_loader = self._load_expert
            p.expected_loads = parts * num_experts  # every expert's tensors are seen, local or not
        if self.fp8_block:
            rows, cols = self.fp8_block
            self.w13_scale = nn.Parameter(torch.empty(self.num_local, 2 * i // rows, -(-hidden // cols),
                                                      dtype=torch.float32), requires_grad=False)
            self.w2_scale = nn.Parameter(torch.empty(self.num_local, -(-hidden // rows), -(-i // cols),
                                                     dtype=torch.float32), requires_grad=False)
            for p in (self.w13_scale, self.w2_scale):
                p.expected_loads = 0  # filled with their weights, not named in the checkpoint
        else:
            self.w13_scale = self.w2_scale = None

    @staticmethod
    def _load_whole(param: nn.Parameter, src: CheckpointTensor, shard_id=None) -> None:
        copy_checked(param, src.read(), src.name)

    def _load_expert(self, param: nn.Parameter, src: CheckpointTensor, shard_id: tuple[int, str]) -> None:
        expert, part = shard_id
        local = expert - self.first_expert
        if not 0 <= local < self.num_local:
            return  # another rank's expert: not read from disk at all
        i = self.local_intermediate
        # Down [hidden, intermediate] is split along its input features in tp mode, gate / up along their rows.
        dim = 1 if part == "down" else 0
        start = self.shard.rank * i if self.mode == "tp" else 0
        length = i if self.mode == "tp" else src.shape[dim]
        if self.fp8_block is None:
            dst = param.data[local] if part == "down" else param.data[local].narrow(0, 0 if part == "gate" else i, i)
            copy_checked(dst, src.narrow(dim, start, length), src.name)
            return
        weight, scale = float8_slice(src, dim, start, length, self.fp8_block, param.device)
        rows = self.fp8_block[0]
        if part == "down":
            copy_checked(param.data[local], weight, src.name)
            copy_checked(self.w2_scale.data[local], scale, src.name + " (block scales)")
        else:
            offset = 0 if part == "gate" else i
            copy_checked(param.data[local].narrow(0, offset, i), weight, src.name)
            copy_checked(self.w13_scale.data[local].narrow(0, offset // rows, i // rows), scale,
                         src.name + " (block scales)")

    @torch.no_grad()
    def init_random(self, generator: torch.Generator) -> None:
        """Random float8 experts (the benchmark's weights): normal values, std 1 / sqrt(fan_in), quantized in
        blocks an expert at a time."""
        for w, scale in ((self.w13, self.w13_scale), (self.w2, self.w2_scale)):
            for e in range(self.num_local):
                values = torch.empty(w.shape[1:], device=w.device).normal_(0.0, w.shape[-1] ** -0.5,
                                                                           generator=generator)
                w.data[e], scale.data[e] = quantize_blocks(values, self.fp8_block)

    def forward(self, x: torch.Tensor, batch=None, valid: torch.Tensor | None = None,
                add: torch.Tensor | None = None, add_gate: torch.Tensor | None = None,
                shared: SharedSlices | None = None) -> torch.Tensor:
        """`valid` (bool [T], CUDA-graph padding rows False): rows that may reach the experts. `add` [T, H] (shared
        experts' output) joins the sum, scaled per token by sigmoid(x . add_gate) where `add_gate` [H] is given.
        `shared`: a shared MLP run as more experts (SharedExpertsMoE.fuses_shared)."""
        shared_w13, shared_w2, num_shared, shared_gate = None, None, 0, None
        if shared is not None:
            shared_w13, shared_w2, num_shared = shared.w13, shared.w2, shared.count
            shared_gate = (x, shared.gate) if shared.gate is not None else None
        weights, ids = route_hidden(x, self.gate, self.routing, self.e_score_correction_bias, num_shared, shared_gate)
        if x.is_cuda:
            # Triton: tokens sorted by expert, grouped GEMMs, no host sync (capturable in a CUDA graph).
            out = fused_moe(x, self.w13, self.w2, weights, ids, self.first_expert, valid, self.w13_scale,
                            self.w2_scale, self.fp8_block, num_experts=self.num_experts, add=add, add_gate=add_gate,
                            shared_w13=shared_w13, shared_w2=shared_w2)
        elif shared is not None:  # (SPMD_MOE_SHARED_FUSED_TOKENS on the CPU: the kernels' reference)
            out = fused_moe_ref(x, self.w13, self.w2, weights, ids, valid=valid, shared_w13=shared_w13,
                                shared_w2=shared_w2)
        else:
            out = self._experts_torch(x, weights, ids, valid)
            if add is not None:
                out = gated_add_ref(out.float(), x, add, add_gate).to(out.dtype)
        return reduced_or_partial(out, self.shard, self.reduce_in_norm) if self.reduce else out

    def defer_reduce_to_norm(self) -> None:
        """Leave the output's sum over the shard to the RMSNorm after this layer (models/llama.py)."""
        self.reduce_in_norm = True

    def _experts_torch(self, x, weights, ids, valid) -> torch.Tensor:
        out = torch.zeros_like(x)
        local_ids = ids - self.first_expert
        if valid is not None:
            local_ids = local_ids.masked_fill(~valid.unsqueeze(1), -1)
        for e in range(self.num_local):
            token_idx, slot = torch.where(local_ids == e)
            if token_idx.numel() == 0:
                continue
            w13, w2 = self._expert(e, x.dtype)
            h = silu_and_mul(F.linear(x[token_idx], w13))
            y = F.linear(h, w2) * weights[token_idx, slot, None].to(x.dtype)
            out.index_add_(0, token_idx, y)
        return out

    def _expert(self, e: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Local expert e's (w13, w2) in `dtype` (float8 experts dequantized)."""
        if self.fp8_block is None:
            return self.w13[e], self.w2[e]
        return (dequantize_blocks(self.w13[e], self.w13_scale[e], self.fp8_block).to(dtype),
                dequantize_blocks(self.w2[e], self.w2_scale[e], self.fp8_block).to(dtype))


def has_routed_experts(hf_config) -> bool:
    """Whether a model config declares routed experts (DeepSeek, Qwen3-MoE, Mixtral naming)."""
    return any((getattr(hf_config, key, None) or 0) > 0
               for key in ("n_routed_experts", "num_experts", "num_local_experts"))


def fp8_resident_block(block: tuple[int, int], intermediate: int, mode: str) -> tuple[int, int]:
    """The float8 experts' (rows, columns) block on a rank holding `intermediate` features of each expert: the
    largest powers of two (at most 128, the kernel's tiles being powers of two) dividing the asked block (a
    float8 checkpoint's own, so its blocks split into whole ones here) and the shard: the gate / up boundary and
    in tp mode this rank's first feature fall on block edges. A checkpoint block of no such shape falls back to
    128 x 128 (its values then quantized again as they load)."""
    def fit(size: int, shard_edge: int) -> int:
        size = math.gcd(size, shard_edge) if shard_edge else size
        return min(size & -size, 128)

    rows, cols = fit(block[0], intermediate), fit(block[1], intermediate if mode == "tp" else 0)
    if min(rows, cols) < 16:
        rows, cols = fit(DEFAULT_FP8_BLOCK[0], intermediate), fit(DEFAULT_FP8_BLOCK[1],
                                                                   intermediate if mode == "tp" else 0)
    if min(rows, cols) < 16:
        raise ConfigError(f"model.expert_dtype=fp8 needs each rank's share of an expert's intermediate size to be a "
                          f"multiple of 16 (float8 blocks of 16+ rows); here it is {intermediate} "
                          f"(parallel.moe={mode}): use parallel.moe=ep, fewer ranks, or model.expert_dtype=model")
    return rows, cols


class MoeBlock(nn.Module):
    """An MoE layer without shared experts, holding the FusedMoE as `experts` (checkpoint naming)."""

    def __init__(self, experts: FusedMoE):
        super().__init__()
        self.experts = experts

    def forward(self, x: torch.Tensor, batch=None, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.experts(x, batch, valid)

    def defer_reduce_to_norm(self) -> None:
        """Its experts' output reduce moves into the RMSNorm after this layer."""
        self.experts.defer_reduce_to_norm()


class SharedExpertsMoE(nn.Module):
    """Routed experts (`experts`, a FusedMoE) plus `shared_experts`, a dense MLP every token goes through (DeepSeek's;
    Qwen2-MoE's one shared expert, whose output `shared_gate` scales by sigmoid(shared_gate(x)) per token).

    Both are split over the same shard and leave partial sums, so one reduction (here, or in the DP-attention
    gather/scatter when `reduce` is False) adds up both. The gate is replicated and reads the whole x: it scales
    every rank's partial sums alike.
    """

    def __init__(self, experts: FusedMoE, shared_experts: nn.Module | None, shard: Shard, reduce: bool,
                 shared_gate: nn.Module | None = None):
        super().__init__()
        self.shard, self.reduce = shard, reduce
        self.reduce_in_norm = False  # defer_reduce_to_norm
        self.experts = experts
        self.shared_experts = shared_experts
        self.shared_gate = shared_gate
        self.shared_count = self._shared_slice_count()

    def _shared_slice_count(self) -> int:
        """How many of the experts' intermediate width the shared MLP's share on this rank is, where fused_moe can
        run it as that many more experts (0 where it cannot): every routed expert on this rank (their ids and the
        shared slots' must not meet), experts in the model's dtype, no biases, whole slices."""
        experts, mlp = self.experts, self.shared_experts
        if (mlp is None or experts.first_expert != 0 or experts.num_local != experts.num_experts
                or experts.fp8_block is not None or mlp.gate_up_proj.bias is not None
                or mlp.down_proj.bias is not None):
            return 0
        width, inter = mlp.gate_up_proj.weight.shape[0] // 2, experts.local_intermediate
        return width // inter if inter and width % inter == 0 else 0

    def fuses_shared(self, x: torch.Tensor) -> bool:
        """Whether this call runs the shared MLP inside fused_moe (SPMD_MOE_SHARED_FUSED_TOKENS): at up to that
        many tokens, where it can, and while its weights are in the experts' dtype (not float8 linear layers)."""
        return ((x.is_cuda or SHARED_FUSED_ON_CPU) and 0 < x.shape[0] <= SHARED_FUSED_TOKENS and self.shared_count > 0
                and self.shared_experts.gate_up_proj.weight.dtype == self.experts.w13.dtype == x.dtype
                and self.shared_experts.down_proj.weight.dtype == x.dtype)

    def forward(self, x: torch.Tensor, batch=None, valid: torch.Tensor | None = None) -> torch.Tensor:
        """`valid`: rows that may reach the routed experts (CUDA-graph padding rows are False)."""
        if self.shared_experts is None:
            out = self.experts(x, batch, valid)
        elif self.fuses_shared(x):
            mlp = self.shared_experts
            gate = self.shared_gate.weight[0] if self.shared_gate is not None else None
            out = self.experts(x, batch, valid, shared=SharedSlices(mlp.gate_up_proj.weight, mlp.down_proj.weight,
                                                                   self.shared_count, gate))
        elif x.is_cuda and SHARED_IN_SUM:
            # The shared output (gated) joins the routed sum in fused_moe's last kernel: no add, and for Qwen2-MoE
            # no gate product, sigmoid and multiply, of their own (four to five launches a layer).
            gate = self.shared_gate.weight[0] if self.shared_gate is not None else None
            out = self.experts(x, batch, valid, add=self.shared_experts(x), add_gate=gate)
        else:  # as transformers computes it (the CPU oracle's float32 equality)
            out = self.experts(x, batch, valid)
            shared = self.shared_experts(x)
            if self.shared_gate is not None:
                shared = torch.sigmoid(self.shared_gate(x)) * shared
            out = out + shared
        return reduced_or_partial(out, self.shard, self.reduce_in_norm) if self.reduce else out

    def defer_reduce_to_norm(self) -> None:
        """Leave the routed and shared experts' summed output's reduce to the RMSNorm after this layer."""
        self.reduce_in_norm = True


def map_moe_checkpoint_name(name: str, block: str = "mlp") -> tuple[str, object] | None:
    """Names inside an MoE block `block` whose FusedMoE is its child `experts`; None for other tensors.

    `{block}.gate.weight` -> `{block}.experts.gate`, `{block}.gate.e_score_correction_bias` ->
    `{block}.experts.e_score_correction_bias`, `{block}.experts.{e}.{proj}.weight` -> w13/w2 with (e, part).
    """
    for suffix in ("weight", "e_score_correction_bias"):
        gate = f".{block}.gate.{suffix}"
        if name.endswith(gate):
            return name[: -len(gate)] + f".{block}.experts." + ("gate" if suffix == "weight" else suffix), None
    return map_expert_name(name)


EXPERT_PARTS = {"gate_proj": "gate", "up_proj": "up", "down_proj": "down", "w1": "gate", "w3": "up", "w2": "down"}


def map_expert_name(name: str) -> tuple[str, tuple[int, str]] | None:
    """`...experts.{e}.{gate_proj|up_proj|down_proj|w1|w2|w3}.weight` -> (our parameter, (e, part))."""
    head, sep, tail = name.partition(".experts.")
    if not sep:
        return None
    expert, proj, _ = tail.split(".", 2)
    part = EXPERT_PARTS.get(proj)
    if part is None or not expert.isdigit():
        return None
    return f"{head}.experts.{'w2' if part == 'down' else 'w13'}", (int(expert), part)
