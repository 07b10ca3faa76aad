"""The global request queue (identical on every rank) and least-loaded assignment of requests to DP ranks."""

from __future__ import annotations

from typing import Callable, Iterator, Optional

from ..data.request import ErrorRow, Request
from ..parallel.dp_meta import DPMeta, Field


class RequestQueue:
    """Pulls rows from the reader on demand; error rows go to `on_error`, requests are handed out in order."""

    def __init__(self, rows: Iterator[Request | ErrorRow], on_error: Callable[[ErrorRow], None]):
        self._rows = rows
        self._on_error = on_error
        self._next: Optional[Request] = None
        self._exhausted = False
        self.num_read = 0
        self.num_errors = 0
        self.prompt_tokens = 0

    def peek(self) -> Optional[Request]:
        while self._next is None and not self._exhausted:
            row = next(self._rows, None)
            if row is None:
                self._exhausted = True
            elif isinstance(row, ErrorRow):
                self.num_errors += 1
                self._on_error(row)
            else:
                self.num_read += 1
                self.prompt_tokens += len(row.prompt_token_ids)
                self._next = row
        return self._next

    def pop(self) -> Request:
        req = self.peek()
        self._next = None
        return req

    @property
    def exhausted(self) -> bool:
        return self.peek() is None


def assign_requests(queue: RequestQueue, meta: DPMeta, capacity: int) -> list[tuple[Request, int]]:
    """Hand queued requests to DP ranks, least loaded first, until every rank holds `capacity` requests.

    Computed from DPMeta alone, so every rank reaches the same assignment without communicating.
    Load is KV tokens held plus prompt tokens queued; ties go to the rank with more free blocks, then
    the lower rank.
    """
    load = meta.column(Field.LOAD_TOKENS)
    free = meta.column(Field.FREE_BLOCKS)
    slots = [capacity - u for u in meta.column(Field.UNFINISHED)]
    out = []
    while queue.peek() is not None:
        open_ranks = [r for r in range(meta.dp) if slots[r] > 0]
        if not open_ranks:
            break
        rank = min(open_ranks, key=lambda r: (load[r], -free[r], r))
        req = queue.pop()
        out.append((req, rank))
        load[rank] += len(req.prompt_token_ids)
        slots[rank] -= 1
    return out
