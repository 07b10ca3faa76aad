"""DP attention's token exchanges through symmetric memory (kernels/push_dp_exchange.py): the gather of every DP
group's rows before the MLP/MoE and the reduce-scatter of its partial outputs, ending in the next RMSNorm.

Made once at engine start where DP attention is on, parallel.all_reduce asks for symmetric memory and every rank is on
one host: the gather's buffers over this rank's DP group, the reduce-scatter's over all ranks. A step whose largest
DP group has more tokens than the buffers hold (prefill chunks) takes NCCL's path (layers/dp_attention.py).
"""

from __future__ import annotations

import logging
import os
from typing import NamedTuple, Optional

import torch
import torch.distributed as dist
from spmd_kernels.push_all_reduce import GATHER, SCATTER_SUM

from .push_all_reduce import PushBuffers, make_push_buffers
from .symm_all_reduce import symmetric_wanted
from .symm_setup import on_every_rank

log = logging.getLogger(__name__)

# SPMD_PUSH_DP_EXCHANGE=0 keeps DP attention's exchanges on NCCL whatever parallel.all_reduce says (A/B runs).
PUSH_DP_ON = os.environ.get("SPMD_PUSH_DP_EXCHANGE", "1") == "1"
# Most tokens a DP group may bring to a step on this path: the decode batches CUDA graphs replay (max_num_seqs, up to
# this). Each rank's buffers hold 2 x (dp + dp * tp) x this many rows of the hidden size.
DP_PUSH_MAX_ROWS = 512


class PushDPExchange(NamedTuple):
    """This rank's buffers for both exchanges."""

    gather: PushBuffers  # over the DP group (this rank's TP index in every DP group)
    scatter: PushBuffers  # over all dp * tp ranks, in world order (dp-major)
    tp: int  # ranks a DP group's rows go to in the reduce-scatter


# By DP group name, made once per process (the jobs of a sweep share their groups, so they share these too).
_by_dp_group: dict[str, PushDPExchange] = {}


def push_dp_exchange_for(dp_group: Optional[dist.ProcessGroup]) -> Optional[PushDPExchange]:
    """The push path made for this DP group's exchanges, if any (layers/dp_attention.py asks on every call)."""
    return _by_dp_group.get(dp_group.group_name) if dp_group is not None and _by_dp_group else None


def dp_exchange_path(dp_group: Optional[dist.ProcessGroup], dp_attention: bool) -> str:
    """What DP attention's exchanges go through, for reports: none (no DP attention), push, or the DP group's
    backend (nccl, gloo)."""
    if not dp_attention or dp_group is None:
        return "none"
    return "push" if push_dp_exchange_for(dp_group) is not None else str(dist.get_backend(dp_group))


def forget_push_dp_exchanges() -> None:
    """After the process groups are destroyed: their buffers go too (freed once no graph holds them)."""
    _by_dp_group.clear()


def enable_push_dp_exchange(mode: str, dims, device: torch.device, dtype: torch.dtype, max_tokens: int,
                            row_width: int) -> bool:
    """Make the push path for DP attention's exchanges where `mode` (parallel.all_reduce) asks for symmetric memory
    over all dims.dp * dims.tp ranks, for up to `max_tokens` tokens a DP group (capped at DP_PUSH_MAX_ROWS) of
    `row_width` (the hidden size); every rank must call it at the same point. Returns whether the exchanges now take
    it (else NCCL's path stays)."""
    world = dims.dp * dims.tp
    if not (dims.dp_attention and dims.dp > 1 and PUSH_DP_ON):
        return False
    if not symmetric_wanted(mode, dims.world_group, world, device, "DP-attention job"):
        return False
    existing = _by_dp_group.get(dims.dp_group.group_name)
    rows = max(1, min(max_tokens, DP_PUSH_MAX_ROWS))
    if existing is not None and all(b.fits(rows, row_width, dtype) for b in (existing.gather, existing.scatter)):
        return True
    _by_dp_group.pop(dims.dp_group.group_name, None)  # an earlier job's buffers that do not fit this one go
    gather = make_push_buffers(dims.dp_group, device, dtype, rows, row_width, int(GATHER.value))
    scatter = make_push_buffers(dims.world_group, device, dtype, rows, row_width, int(SCATTER_SUM.value), dims.tp)
    # Every rank must agree, or one would wait in a push kernel for a peer that took NCCL's path.
    if not on_every_rank(gather is not None and scatter is not None, dims.world_group, device):
        if mode == "symmetric":
            raise RuntimeError("parallel.all_reduce=symmetric: DP attention's push buffers could not be set up on "
                               "every rank (see the warnings above); use parallel.all_reduce=auto or nccl")
        log.warning("push DP exchange unavailable on some rank: DP attention's gather and scatter stay on NCCL")
        return False
    _by_dp_group[dims.dp_group.group_name] = PushDPExchange(gather, scatter, dims.tp)
    log.info("DP attention's gather and reduce-scatter through symmetric memory (%d ranks, up to %d tokens a DP "
             "group, ending in the next RMSNorm)", world, rows)
    return True
