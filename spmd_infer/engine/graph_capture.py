"""The batch source that records decode CUDA graphs, one bucket per step, largest first (shared pool)."""

from __future__ import annotations

from typing import Optional

from ..data.request import Request
from ..parallel.dp_meta import Phase
from .scheduler import ScheduledBatch


class GraphCaptureSource:
    """Each step hands the step function a synthetic decode batch that says which bucket to capture."""

    eos_ids: frozenset[int] = frozenset()

    def __init__(self, buckets: list[int]):
        self.pending = sorted(buckets, reverse=True)

    def schedule(self) -> ScheduledBatch:
        if not self.pending:
            return ScheduledBatch(Phase.IDLE)
        return ScheduledBatch(Phase.DECODE, capture_bucket=self.pending.pop(0))

    def metadata(self) -> dict[str, int]:
        return dict(unfinished=len(self.pending))

    def uses_cache(self) -> bool:
        return False

    def can_defer(self, batch: Optional[ScheduledBatch] = None) -> bool:
        return False  # synthetic steps always settle their tokens at once

    def generator_keys(self, batch: ScheduledBatch) -> list[int]:
        return []

    def postprocess(self, batch: ScheduledBatch, tokens: list[int], logprobs: list) -> None:
        pass

    def add(self, request: Request) -> None:
        raise RuntimeError("graph capture takes no requests")
