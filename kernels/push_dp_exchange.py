"""DP attention's two exchanges around the MLP/MoE on the push kernel (push_all_reduce.py): gather every DP group's
tokens onto every rank, then give each rank its group's rows summed over all ranks, ending in the RMSNorm after.

Under DP attention each DP group attends over its own tokens, and the MLP or MoE after it is split over all ranks.
NCCL's path pads the rows, all-gathers them (and the padding marks inside CUDA graphs: a second collective),
all-reduces the partial outputs over the TP group and reduce-scatters them over the DP group, with copies between;
here the gather is one kernel and the reduce, residual add and norm another, each one trip over NVLink.
"""

from __future__ import annotations

import torch

from .push_all_reduce import GATHER, SCATTER_SUM, PushPeers, launch_push
from .rmsnorm import rms_norm_ref


def push_exchange_supports(rows: int, width: int, peers: PushPeers) -> bool:
    """Whether the exchanges take `rows` rows a rank (the largest DP group's count) of `width` features."""
    return 0 < rows <= peers.max_rows and 0 < width <= peers.row_stride


def push_all_gather(x: torch.Tensor, peers: PushPeers, rows: int,
                    token_valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(y [world * rows, H], kept [world * rows] bool): rank s's x [count_s, H] at rows s * rows .. of y, zeros
    after its count_s, and kept marking its real rows (below count_s and, where given, token_valid [count_s] true:
    CUDA graphs' padding). Every rank of the group calls it with the same `rows`, at least every rank's count."""
    count, H = x.shape
    assert x.is_contiguous() and count <= rows and push_exchange_supports(rows, H, peers), (tuple(x.shape), rows)
    y = x.new_empty((peers.world * rows, H))
    kept = torch.empty(peers.world * rows, dtype=torch.uint8, device=x.device)
    keep = token_valid.view(torch.uint8) if token_valid is not None else None
    launch_push(int(GATHER.value), x, peers, rows, count, y, keep=keep, kept=kept)
    return y, kept.view(torch.bool)


def push_reduce_scatter(x: torch.Tensor, peers: PushPeers, group: int, count: int,
                        residual: torch.Tensor | None = None, weight: torch.Tensor | None = None,
                        eps: float = 0.0) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """x [world // group * rows, H] holds a block of rows for every `group` consecutive ranks; rank p gets the sum
    over all ranks of their block p // group, its first `count` rows: y [count, H]. With `weight` (and `residual`
    [count, H]) the pair (rms_norm(sum + residual) * weight, sum + residual) instead, as rms_norm returns it."""
    blocks = peers.world // group
    H = x.shape[-1]
    rows = x.shape[0] // blocks
    assert x.is_contiguous() and x.shape[0] == blocks * rows and count <= rows, (tuple(x.shape), blocks, count)
    assert push_exchange_supports(rows, H, peers) and peers.world % group == 0, (rows, H, group)
    y = x.new_empty((count, H))
    norm = weight is not None
    if norm:
        assert residual is not None and residual.shape == (count, H) and weight.shape == (H,), "norm needs both"
    h = torch.empty_like(y) if norm else None
    launch_push(int(SCATTER_SUM.value), x, peers, rows, count, y, group=group, residual=residual, weight=weight, h=h,
                eps=eps)
    return (y, h) if norm else y


def push_all_gather_ref(xs: list[torch.Tensor], rows: int,
                        token_valid: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-PyTorch reference for :func:`push_all_gather`, given every rank's x (and token_valid) in rank order."""
    y = xs[0].new_zeros((len(xs) * rows, xs[0].shape[-1]))
    kept = torch.zeros(len(xs) * rows, dtype=torch.bool, device=xs[0].device)
    for s, x in enumerate(xs):
        y[s * rows: s * rows + x.shape[0]] = x
        kept[s * rows: s * rows + x.shape[0]] = True if token_valid is None else token_valid[s]
    return y, kept


def push_reduce_scatter_ref(xs: list[torch.Tensor], rank: int, group: int, count: int,
                            residual: torch.Tensor | None = None, weight: torch.Tensor | None = None,
                            eps: float = 0.0) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Plain-PyTorch reference for :func:`push_reduce_scatter` on `rank`, given every rank's x in rank order: the
    fp32 sum of their block rank // group in rank order, rounded once, then (with `weight`) the residual add and
    norm."""
    rows = xs[0].shape[0] // (len(xs) // group)
    block = rank // group
    total = torch.zeros((count, xs[0].shape[-1]), dtype=torch.float32, device=xs[0].device)
    for x in xs:
        total = total + x[block * rows: block * rows + count].float()
    total = total.to(xs[0].dtype)
    return total if weight is None else rms_norm_ref(total, weight, eps, residual)
