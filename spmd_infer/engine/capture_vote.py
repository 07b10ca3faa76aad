"""The ranks' vote after each prefill-graph bucket: over gloo on the host, a failed rank's wait bounded.

Every rank captures the same buckets, and a bucket's warm-up forward runs its TP (under DP attention, DP)
collectives. After each bucket the ranks vote whether all captures succeeded (prefill_graphs.capture_in_agreement),
and a failure anywhere leaves every rank prefilling eagerly. When a rank's capture fails part way through that
warm-up forward (an OOM on one rank only), the others wait in a collective it never joins and never reach the vote.
Voting over NCCL, the failed rank waited too, and the job hung until the collective timeout (runtime.load_timeout_s,
600 s by default). Here the vote runs on the host: a rank whose own capture failed waits STRANDED_AFTER_S for the
others and then fails the job with what to change; torchrun then stops every rank.
"""

from __future__ import annotations

import datetime
from typing import Optional

import torch
import torch.distributed as dist

# How long a rank whose capture failed waits for the others' votes. Ranks done with the bucket's collectives arrive
# within seconds (a bucket's warm-up and capture take well under a second, a Triton compile of a new variant a few);
# ranks stranded in a warm-up collective never do.
STRANDED_AFTER_S = 120.0


class CaptureStranded(RuntimeError):
    """This rank's capture failed and the other ranks did not reach the vote: they wait in a collective of the
    bucket's warm-up forward that this rank left. Not recoverable by prefilling eagerly; the job fails."""


def all_captured(ok: bool, group: Optional[dist.ProcessGroup], stranded_after_s: float = STRANDED_AFTER_S) -> bool:
    """True when every rank of `group` (a gloo group: a CPU collective never queues behind the GPU) says `ok`. A rank
    whose capture succeeded waits as long as the group's timeout allows (the failed rank's exit ends the job); one
    whose capture failed waits `stranded_after_s`, then raises CaptureStranded."""
    if group is None or dist.get_world_size(group) == 1:
        return ok
    flag = torch.tensor([int(ok)], dtype=torch.int64)
    work = dist.all_reduce(flag, op=dist.ReduceOp.MIN, group=group, async_op=True)
    if ok:
        work.wait()
    else:
        try:
            work.wait(timeout=datetime.timedelta(seconds=stranded_after_s))
        except RuntimeError as e:  # gloo: "Operation timed out!"
            raise CaptureStranded(
                f"the other ranks did not reach the vote within {stranded_after_s:.0f} s: they wait in a collective "
                "of the bucket's warm-up forward that this rank left. Set runtime.prefill_graphs=false to prefill "
                "eagerly without capturing, or leave more GPU memory free (a lower cache.gpu_memory_utilization) "
                "where the capture ran out of it") from e
    return bool(flag.item())
