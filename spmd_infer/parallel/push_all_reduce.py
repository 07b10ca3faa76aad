"""The buffers of kernels/push_all_reduce.py for one process group: each rank's row slots and flags in symmetric
memory (mapped by every peer), its rows' epochs in its own memory, and the peers' addresses as device tensors.

symm_all_reduce.py makes them for a TP group beside its own buffer, when the group takes the symmetric path, and sends
small all-reduces (at most PUSH_MAX_ROWS rows of the model's width) through them; the RMSNorm after o_proj, down_proj
and MoE layers runs in the same kernel there (layers/layernorm.py). dp_exchange.py makes them for DP attention's
gather (over the DP group) and reduce-scatter (over all ranks).
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import torch
import torch.distributed as dist
from spmd_kernels.push_all_reduce import SUM, PushPeers, precompile_push

from .symm_setup import map_symmetric

log = logging.getLogger(__name__)

# SPMD_PUSH_ALL_REDUCE=0 leaves the small all-reduces to PyTorch's one-shot kernel and the norm to its own (A/B runs).
PUSH_ON = os.environ.get("SPMD_PUSH_ALL_REDUCE", "1") == "1"
# Rows an all-reduce may have on this path: past 256 (2 MiB at hidden 4096) the two-shot kernel is faster (2 x H200,
# kernels/README.md's table).
PUSH_MAX_ROWS = 256


class PushBuffers:
    """A group's push buffers on this rank: the kernel's view (`peers`), the element type its slots were sized in,
    and the symmetric tensors and handles behind its pointer tables, held so the mappings live as long as it does."""

    def __init__(self, peers: PushPeers, dtype: torch.dtype, mapped: tuple):
        self.peers = peers
        self.dtype = dtype
        self._mapped = mapped

    def fits(self, rows: int, width: int, dtype: torch.dtype) -> bool:
        """Whether these buffers serve launches of up to `rows` rows a rank of `width` elements of `dtype` (a later
        job of the same process may ask for more, or another dtype: its slots would then overflow)."""
        return self.dtype == dtype and self.peers.max_rows >= rows and self.peers.row_stride >= width


def make_push_buffers(group: dist.ProcessGroup, device: torch.device, dtype: torch.dtype, max_rows: int,
                      row_width: int, mode: int = int(SUM.value), blocks_of: int = 1) -> Optional[PushBuffers]:
    """This rank's push buffers for `group` (a collective over it: every rank calls it at the same point), for
    launches of up to `max_rows` rows a rank of up to `row_width` elements, with the kernel's variants for `mode`
    (and a reduce-scatter's `blocks_of`) compiled; None (with a warning) where symmetric memory cannot map them or
    the kernel cannot build. The caller agrees over the group before any kernel uses them, so every rank's zeroed
    flags are in place before a peer can raise one."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    mapped = map_symmetric(group, device, [(2 * world * max_rows * row_width, dtype),
                                           (3 * world * max_rows, torch.int32)], "push kernel")  # flags, row marks
    if mapped is None:
        return None
    (data, data_handle), (flags, flags_handle) = mapped
    try:
        data_ptrs = torch.tensor(list(data_handle.buffer_ptrs), dtype=torch.int64, device=device)
        flag_ptrs = torch.tensor(list(flags_handle.buffer_ptrs), dtype=torch.int64, device=device)
        epochs = torch.zeros(max_rows, dtype=torch.int32, device=device)
        peers = PushPeers(data_ptrs, flag_ptrs, epochs, rank, world, max_rows, row_width)
        precompile_push(peers, dtype, row_width, device, mode, blocks_of)  # no rank waits on another here
    except Exception as err:  # any failure leaves the caller's fallback in place, agreed over the group by the caller
        log.warning("push kernel unavailable (%s: %s)", type(err).__name__, str(err)[:300])
        return None
    return PushBuffers(peers, dtype, (data, flags, data_handle, flags_handle))
