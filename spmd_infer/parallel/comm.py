"""Shard descriptors and the few collectives that layers use, each over the group it is given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional, Protocol

import torch
import torch.distributed as dist

from .symm_all_reduce import symmetric_all_reduce_for


@dataclass(frozen=True)
class Shard:
    """Which slice of a sharded layer this rank owns: index `rank` of `size`, reduced over `group`."""

    rank: int = 0
    size: int = 1
    group: Optional[dist.ProcessGroup] = None

    def split(self, n: int, what: str) -> int:
        """Per-rank share of n, which must divide evenly (callers validate user-facing cases earlier)."""
        if n % self.size:
            raise ValueError(f"{what}={n} is not divisible by the shard count {self.size}")
        return n // self.size


def all_reduce(x: torch.Tensor, shard: Shard) -> torch.Tensor:
    """The sum of x over the shard's group: x itself (reduced in place by NCCL or gloo) or, where the group has the
    symmetric-memory path and it takes x, a new tensor. Callers use the returned tensor."""
    if shard.size > 1:
        fast = symmetric_all_reduce_for(shard.group)
        algorithm = fast.algorithm(x) if fast is not None else "nccl"
        if algorithm != "nccl":
            return fast(x, algorithm)
        dist.all_reduce(x, group=shard.group)
    return x


class DeferredSums(Protocol):
    """A layer's output whose sum over ranks is left to the RMSNorm after it (layers/layernorm.py)."""

    def reduced(self) -> torch.Tensor:
        """The sums, as the layer would have returned them."""

    def add_norm(self, residual: torch.Tensor, weight: torch.Tensor,
                 eps: float) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """(rms_norm(sums + residual) * weight, sums + residual) in one kernel, or None where none takes them."""


class PartialSums(NamedTuple):
    """A row-parallel layer's output left unreduced for the RMSNorm after it, which sums it over the shard's group
    (in the same kernel where the group has the push path: add_norm)."""

    values: torch.Tensor
    shard: Shard

    def reduced(self) -> torch.Tensor:
        return all_reduce(self.values, self.shard)

    def add_norm(self, residual: torch.Tensor, weight: torch.Tensor,
                 eps: float) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """(rms_norm(sum + residual) * weight, sum + residual) for the sum over the group, in one kernel where the
        group's symmetric path has push buffers that take it (kernels/push_all_reduce.py); None otherwise (the caller
        reduces, then norms)."""
        fast = symmetric_all_reduce_for(self.shard.group) if self.shard.size > 1 else None
        return fast.add_norm(self.values, residual, weight, eps) if fast is not None else None


def reduced_or_partial(y: torch.Tensor, shard: Shard, defer: bool) -> torch.Tensor | PartialSums:
    """y summed over the shard's group, or (defer, more than one rank) left as PartialSums for the RMSNorm after it
    to sum: a layer's output reduce moved into the next norm (models/llama.py's defer_reduce_to_norm)."""
    if defer and shard.size > 1:
        return PartialSums(y, shard)
    return all_reduce(y, shard)


def all_gather_last_dim(x: torch.Tensor, shard: Shard) -> torch.Tensor:
    """Concatenate each rank's slice along the last dimension (vocab-parallel logits)."""
    if shard.size == 1:
        return x
    x = x.contiguous()
    # Gathered along dim 0 (the layout every backend accepts), then each rank's slice moved to the end.
    parts = torch.empty((shard.size * x.shape[0], *x.shape[1:]), dtype=x.dtype, device=x.device)
    dist.all_gather_into_tensor(parts, x, group=shard.group)
    return torch.cat(parts.chunk(shard.size, dim=0), dim=-1)
