"""Graceful stop: SIGTERM or SIGINT becomes a flag, and every rank agrees on it before the job stops after a step.

A rank must never stop alone: its peers would wait for it in the next collective. So a signal only
sets a flag, carried in the step's DP metadata row (Field.STOP_REQUESTED). When tp == 1 the DP group
is the whole world and that all-gather is the agreement, every step, at no extra cost. When tp > 1 the
DP all-gather spans only the ranks with the same TP rank, so the TP peers of a group could disagree
(torchrun forwards SIGTERM to every worker, but a signal may reach only some of them, e.g. one kill
by hand); then every AGREE_EVERY steps one all-reduce MAX over every rank decides, on the host (gloo: an NCCL one
would wait for the forward in flight and stall an overlapped step). One tiny collective every 8 steps costs nothing
measurable; every step it would double the per-step exchange.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

import torch
import torch.distributed as dist

from .parallel.dp_meta import DPMeta, Field

log = logging.getLogger(__name__)

AGREE_EVERY = 8
# torchrun forwards the signal it gets to every worker, so under Ctrl-C a worker sees SIGINT twice
# within milliseconds (from the terminal and from torchrun). Only a signal repeated later than this
# means "stop now, without finishing the step".
FORCE_AFTER_S = 3.0


class StopRequest:
    def __init__(self, dims: Any, every: int = AGREE_EVERY):
        self.dims = dims
        self.every = every
        # Made now, on every rank alike (a group's creation is collective); only tp > 1 votes.
        self.vote_group = dims.host_group if dims.tp > 1 else None
        self.signum = 0  # the first signal this rank got; 0: none
        self._first_at = 0.0
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread (embedded use)
        for s in (signal.SIGTERM, signal.SIGINT):
            self._previous[s] = signal.signal(s, self._handle)

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.signum:
            self.signum, self._first_at = signum, time.monotonic()
            log.warning("got %s: finishing the current step, saving finished rows, then exiting; rerun the same "
                        "command to resume (send it again after %.0f s to exit at once)",
                        signal.Signals(signum).name, FORCE_AFTER_S)
        elif time.monotonic() - self._first_at > FORCE_AFTER_S:
            self.restore()
            signal.raise_signal(signum)  # the previous handler: KeyboardInterrupt, or the default (exit)

    def agreed(self, step: int, meta: DPMeta) -> int:
        """The signal that stops every rank after this step (the same number on all ranks), or 0."""
        if self.dims.tp == 1:
            return max(meta.column(Field.STOP_REQUESTED))
        if step % self.every:
            return 0
        flag = torch.tensor([self.signum], dtype=torch.int64)  # a host tensor: the vote goes over gloo
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.vote_group)
        return int(flag.item())
