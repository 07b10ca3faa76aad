"""A bounded record of every step's DPMeta: exact job totals plus a down-sampled series for plots."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..parallel.dp_meta import DPMeta, Field, Phase


@dataclass
class Bucket:
    """Consecutive steps merged into one point of the plots."""

    steps: int = 0
    t_end: float = 0.0  # seconds since the timeline started, at the bucket's last step
    tokens: list[int] = field(default_factory=list)  # tokens run, per DP rank
    idle: list[int] = field(default_factory=list)  # steps without tokens while another DP rank had some
    dummy: list[int] = field(default_factory=list)  # of those, steps that ran a dummy forward (DP attention)
    prefill_tokens: int = 0  # over all DP ranks
    output_tokens: int = 0  # cumulative over all DP ranks, at t_end

    def merge(self, other: "Bucket") -> "Bucket":
        return Bucket(self.steps + other.steps, other.t_end, _add(self.tokens, other.tokens),
                      _add(self.idle, other.idle), _add(self.dummy, other.dummy),
                      self.prefill_tokens + other.prefill_tokens, other.output_tokens)


def _add(a: list[int], b: list[int]) -> list[int]:
    return [x + y for x, y in zip(a, b)]


class Timeline:
    """Fed one DPMeta per step on every rank (all see the same rows); memory stays O(max_points * dp).

    When `max_points` buckets are full, neighbours merge pairwise and each bucket then covers twice
    as many steps, so a job of 10^6 steps still plots as at most `max_points` points.
    """

    def __init__(self, dp: int, num_blocks: int, dp_attention: bool, max_points: int = 512):
        self.dp = dp
        self.num_blocks = num_blocks
        self.dp_attention = dp_attention
        self.max_points = max(2, max_points - max_points % 2)
        self.started = time.perf_counter()
        self.steps_per_point = 1
        self.points: list[Bucket] = []
        self._open = self._empty()
        # Exact whole-job totals, not down-sampled.
        self.steps = 0
        self.working_steps = 0  # steps in which at least one DP rank ran tokens
        self.tokens = [0] * dp
        self.busiest_tokens = 0  # sum over steps of the largest per-rank token count
        self.idle = [0] * dp
        self.dummy = [0] * dp
        self.prefill_tokens = 0
        self.peak_blocks_used = [0] * dp
        self.last: DPMeta | None = None

    def _empty(self) -> Bucket:
        return Bucket(tokens=[0] * self.dp, idle=[0] * self.dp, dummy=[0] * self.dp)

    def record(self, meta: DPMeta, final: bool = False) -> None:
        """Account one step; `final`: the closing exchange, which runs nothing but holds the final counters."""
        self.last = meta
        if final:
            return
        tokens = meta.column(Field.NUM_TOKENS)
        phases = meta.column(Field.PHASE)
        free = meta.column(Field.FREE_BLOCKS)
        busiest = max(tokens)
        prefill = sum(t for t, p in zip(tokens, phases) if p == Phase.PREFILL)
        self.steps += 1
        self.prefill_tokens += prefill
        b = self._open
        b.steps += 1
        b.t_end = time.perf_counter() - self.started
        b.prefill_tokens += prefill
        b.output_tokens = sum(meta.column(Field.OUTPUT_TOKENS))
        for r, t in enumerate(tokens):
            self.tokens[r] += t
            b.tokens[r] += t
            self.peak_blocks_used[r] = max(self.peak_blocks_used[r], self.num_blocks - free[r])
        if busiest > 0:
            self.working_steps += 1
            self.busiest_tokens += busiest
            for r, t in enumerate(tokens):
                if t == 0:
                    # In DP-attention mode an idle rank must still join the MLP collectives: a dummy forward.
                    ran_dummy = int(self.dp_attention)
                    self.idle[r] += 1
                    self.dummy[r] += ran_dummy
                    b.idle[r] += 1
                    b.dummy[r] += ran_dummy
        if b.steps >= self.steps_per_point:
            self._close()

    def _close(self) -> None:
        self.points.append(self._open)
        self._open = self._empty()
        if len(self.points) >= self.max_points:
            self.points = [a.merge(b) for a, b in zip(self.points[0::2], self.points[1::2])]
            self.steps_per_point *= 2

    def series(self) -> list[Bucket]:
        """The down-sampled points, the unfinished last bucket included."""
        return self.points + ([self._open] if self._open.steps else [])

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started
