"""Setting up symmetric memory over a process group without a hang: allocate on every rank, agree, only then map.

A rank whose allocation fails (a driver without multicast-free symmetric memory, too little memory) must not leave
its peers waiting in the rendezvous, a collective it will never join: every rank allocates first, the group agrees
on the outcome, and the rendezvous runs only where every rank holds its buffers. The callers agree once more
afterwards (a rendezvous or a kernel build may still fail on one rank) before any kernel uses the buffers.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


def on_every_rank(done: bool, group: dist.ProcessGroup, device: torch.device) -> bool:
    """Whether `done` holds on every rank of the group (a collective over it)."""
    ok = torch.tensor([int(done)], dtype=torch.int32, device=device)
    dist.all_reduce(ok, op=dist.ReduceOp.MIN, group=group)
    return bool(ok.item())


def map_symmetric(group: dist.ProcessGroup, device: torch.device, sizes: list[tuple[int, torch.dtype]],
                  what: str, ready: bool = True) -> Optional[list[tuple[torch.Tensor, object]]]:
    """[(buffer, handle)] for each (elements, dtype) in `sizes`: allocated in symmetric memory, zeroed, and mapped by
    every rank of `group` (a collective over it: every rank calls it at the same point). None, on every rank, where
    any rank could not allocate (or was not `ready`: its own checks failed), agreed before any rendezvous; None on
    a rank whose rendezvous failed (the caller agrees on that). `what` names the buffers in warnings."""
    import torch.distributed._symmetric_memory as symm_mem

    buffers = None
    if ready:
        try:
            buffers = [symm_mem.empty(n, dtype=dtype, device=device).zero_() for n, dtype in sizes]
        except Exception as err:
            log.warning("%s: symmetric memory unavailable (%s: %s)", what, type(err).__name__, str(err)[:300])
    if not on_every_rank(buffers is not None, group, device):
        return None
    try:
        return [(buffer, symm_mem.rendezvous(buffer, group.group_name)) for buffer in buffers]
    except Exception as err:
        log.warning("%s: symmetric memory could not be mapped (%s: %s)", what, type(err).__name__, str(err)[:300])
        return None
