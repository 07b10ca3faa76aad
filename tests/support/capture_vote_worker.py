"""One rank of the prefill-graph capture vote test (tests/test_prefill_graphs.py launches 2 under torchrun on gloo,
CPU): the real vote (engine/capture_vote.py) through the real agreement (capture_in_agreement), captures faked. All
succeed: every bucket captured. Rank 0 fails, rank 1 succeeds: both abandon, rank 0 with its error. Rank 0 fails
while rank 1 is stranded (its capture outlasts the bound, as in a warm-up collective rank 0 left): rank 0 fails
the job within the bound and says what to change, instead of waiting out the collective timeout."""

from __future__ import annotations

import datetime
import time
from functools import partial

import torch
import torch.distributed as dist

from spmd_infer.engine.capture_vote import CaptureStranded, all_captured
from spmd_infer.engine.prefill_graphs import CaptureAbandoned, capture_in_agreement

BOUND_S = 2.0


def _capture(rank: int, failing_rank: int, stranded_s: float, bucket: int) -> None:
    if bucket == 64 and rank == failing_rank:
        raise torch.OutOfMemoryError("no room\nmore")
    if bucket == 64 and stranded_s:
        time.sleep(stranded_s)


def main() -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=60))
    vote = partial(all_captured, group=group, stranded_after_s=BOUND_S)

    captured = []
    capture_in_agreement([16, 64, 256], captured.append, vote)
    assert captured == [256, 64, 16], captured

    try:
        capture_in_agreement([16, 64, 256], partial(_capture, rank, 0, 0.0), vote)
        raise AssertionError("a failed capture was not abandoned")
    except CaptureAbandoned as e:
        assert str(e) == ("OutOfMemoryError: no room" if rank == 0 else "another rank's capture failed"), e

    started = time.monotonic()
    try:
        capture_in_agreement([16, 64, 256], partial(_capture, rank, 0, 3 * BOUND_S), vote)
        raise AssertionError("no rank failed")
    except CaptureStranded as e:  # rank 0's: its vote found rank 1 stranded
        waited = time.monotonic() - started
        assert rank == 0 and BOUND_S <= waited < 2.5 * BOUND_S, (rank, waited)
        for part in ("64-token", "OutOfMemoryError: no room", f"within {BOUND_S:.0f} s", "runtime.prefill_graphs=false",
                     "cache.gpu_memory_utilization"):
            assert part in str(e), (part, str(e))
    except CaptureAbandoned:  # rank 1's, once out: rank 0's timed-out vote is still queued, and rank 1's meets it
        assert rank == 1
    dist.barrier(group=group)
    if rank == 0:
        print("CAPTURE VOTE OK")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
