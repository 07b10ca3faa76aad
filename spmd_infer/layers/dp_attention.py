"""DP attention's MLP side: gather every DP group's tokens, run the all-rank-sharded MLP/MoE, scatter back.

Attention ran per DP group on its own tokens; the MLP or MoE after it is split over all dp*tp ranks,
so each rank needs the tokens of every DP group. Token counts come from DPMeta (identical on all ranks),
so no size exchange is needed. On NCCL's path padding to the largest count exists only inside the collectives and
padded rows never reach the MLP or the experts (but inside CUDA graphs, where every rank sends a full bucket). Where
the job has the push path (parallel/dp_exchange.py), one kernel gathers the rows padded, with marks that keep the
padding out of the experts, and the reduce over all ranks is left to the RMSNorm after the MLP (ScatterSums),
which ends it in the same kernel.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.distributed as dist
from spmd_kernels.push_dp_exchange import push_all_gather, push_exchange_supports, push_reduce_scatter
from torch import nn

from ..forward_batch import ForwardBatch
from ..parallel.comm import all_reduce
from ..parallel.dp_exchange import PushDPExchange, push_dp_exchange_for
from ..parallel.sharding import LayerSharding


class ScatterSums(NamedTuple):
    """The MLP's partial outputs for every DP group's padded rows, left for the RMSNorm after it: each rank's own
    group's rows, summed over all ranks (kernels/push_dp_exchange.py's reduce-scatter)."""

    values: torch.Tensor  # [dp * rows, H], DP group d's rows at d * rows ..
    exchange: PushDPExchange
    count: int  # this rank's DP group's tokens

    def reduced(self) -> torch.Tensor:
        return push_reduce_scatter(self.values, self.exchange.scatter.peers, self.exchange.tp, self.count)

    def add_norm(self, residual: torch.Tensor, weight: torch.Tensor,
                 eps: float) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """(rms_norm(sum + residual) * weight, sum + residual) in the reduce-scatter's kernel; None where the
        residual is not the kernel's (the caller reduces, then norms)."""
        if residual.dtype != self.values.dtype or not residual.is_contiguous():
            return None
        return push_reduce_scatter(self.values, self.exchange.scatter.peers, self.exchange.tp, self.count,
                                   residual.view(self.count, -1), weight, eps)


class DPGatherScatter:
    """Runs an MLP/MoE built over `sharding.mlp` with reduce=False; returns this DP group's rows, reduced.

    Holds no parameters (so checkpoint names are unchanged); the decoder layer calls it around its MLP.
    """

    def __init__(self, sharding: LayerSharding):
        self.sharding = sharding

    def __call__(self, mlp: nn.Module, x: torch.Tensor, batch: ForwardBatch) -> torch.Tensor | ScatterSums:
        counts = batch.dp_num_tokens
        dp, me = self.sharding.dp.size, self.sharding.dp.rank
        pad = max(counts)
        push = push_dp_exchange_for(self.sharding.dp.group)
        if push is not None and push_exchange_supports(pad, x.shape[-1], push.gather.peers):  # alike on every rank
            rows, kept = push_all_gather(x.contiguous(), push.gather.peers, pad, batch.token_valid)
            partial = mlp(rows, batch, valid=kept)
            return ScatterSums(partial.contiguous(), push, counts[me])
        padded = x.new_zeros((pad, x.shape[-1]))
        padded[: x.shape[0]] = x
        gathered = torch.empty((dp * pad, x.shape[-1]), dtype=x.dtype, device=x.device)
        dist.all_gather_into_tensor(gathered, padded, group=self.sharding.dp.group)
        rows = torch.cat([gathered[d * pad: d * pad + counts[d]] for d in range(dp)])  # real rows only
        valid = None
        if batch.token_valid is not None:
            # Inside a CUDA graph every rank sends a full bucket; the flags say which rows are padding.
            flags = torch.empty(dp * pad, dtype=torch.uint8, device=x.device)
            dist.all_gather_into_tensor(flags, batch.token_valid.to(torch.uint8), group=self.sharding.dp.group)
            valid = flags.bool()
        partial = mlp(rows, batch, valid=valid)
        # Sum of every rank's partial output: over the TP group, then over the DP group for our rows.
        out = gathered.new_zeros((dp * pad, x.shape[-1]))
        start = 0
        for d in range(dp):
            out[d * pad: d * pad + counts[d]] = partial[start: start + counts[d]]
            start += counts[d]
        out = all_reduce(out, self.sharding.attn)
        mine = _reduce_scatter(out, self.sharding.dp, pad)
        return mine[: counts[me]]


def _reduce_scatter(x: torch.Tensor, dp, pad: int) -> torch.Tensor:
    if dist.get_backend(dp.group) == "gloo":
        # gloo has no reduce-scatter: all-reduce and keep our slice (CPU tests only).
        dist.all_reduce(x, group=dp.group)
        return x[dp.rank * pad: (dp.rank + 1) * pad]
    out = torch.empty((pad, x.shape[-1]), dtype=x.dtype, device=x.device)
    dist.reduce_scatter_tensor(out, x, group=dp.group)
    return out
