"""Stepper's overlapped steps without a model: which step settles a prefill left in flight, as its result and its
metadata row (Field.SETTLES_PREFILL) say, including a prefill settled at once that leaves the in-flight one alone."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from spmd_infer.engine.scheduler import ScheduledBatch
from spmd_infer.engine.step import Stepper
from spmd_infer.parallel.dp_meta import DPMeta, Field, Phase


def _batch(phase: Phase, seqs: list, defer: bool) -> ScheduledBatch:
    b = ScheduledBatch(phase)
    b.seqs, b.num_new_tokens, b.sampled = seqs, [1] * len(seqs), [True] * len(seqs)
    b.defer = defer  # what the fake source's can_defer(batch) answers
    return b


class _Source:
    """Hands out the given batches in turn; records which steps' tokens were settled, and how."""

    eos_ids = frozenset()

    def __init__(self, batches):
        self.batches = list(batches)
        self.events = []

    def schedule(self):
        return self.batches.pop(0) if self.batches else ScheduledBatch(Phase.IDLE)

    def metadata(self):
        return {"unfinished": 1}

    def uses_cache(self):
        return True

    def generator_keys(self, batch):
        return []

    def can_defer(self, batch=None):
        return True if batch is None else batch.defer

    def advance(self, batch):
        return [0] * len(batch.sampled_seqs)

    def resolve(self, batch, positions, tokens):
        self.events.append(("resolved", batch.phase))

    def postprocess(self, batch, tokens, logprobs):
        self.events.append(("settled at once", batch.phase))


class _Runner:
    graphs = None
    device = torch.device("cpu")

    def can_graph(self, batch):
        return False

    def prepare(self, batch, meta, use_cache, bucket, feedback):
        return SimpleNamespace(prompt_scores=None)

    def run(self, fb, bucket, num_seqs):
        return None

    def sample(self, batch, logits, eos_ids, keys):
        return [7] * len(batch.sampled_seqs), []

    def sample_on_device(self, batch, logits, eos_ids, keys):
        return torch.full((len(batch.sampled_seqs),), 7)


class _Exchange:
    def __init__(self):
        self.rows = []

    def gather(self, row):
        self.rows.append(row.clone())
        return DPMeta(rows=row.view(1, -1).clone(), dp_rank=0)


def test_only_a_step_that_waits_for_an_overlapped_prefill_is_marked_as_settling_it():
    source = _Source([
        _batch(Phase.PREFILL, ["a"], defer=True),  # left in flight
        _batch(Phase.PREFILL, ["b"], defer=False),  # prompt log-probabilities: settled at once, "a" stays in flight
        _batch(Phase.DECODE, ["a", "b"], defer=True),  # launched, then settles "a"'s prefill
        _batch(Phase.DECODE, ["a", "b"], defer=True),  # settles the decode before it
    ])
    exchange = _Exchange()
    stepper = Stepper(_Runner(), exchange, dp_attention=False, capacity=4, overlap=True)
    marked = [stepper.step(source).settled_prefill for _ in range(4)]
    assert marked == [False, False, True, False]
    assert [int(r[Field.SETTLES_PREFILL]) for r in exchange.rows] == [0, 0, 1, 0]
    assert source.events == [("settled at once", Phase.PREFILL), ("resolved", Phase.PREFILL),
                             ("resolved", Phase.DECODE)]
    assert stepper.stats.overlapped_prefills == 1


def test_a_prefill_in_flight_flushed_before_scheduling_is_settled_by_that_step():
    class Flushing(_Source):
        def can_defer(self, batch=None):
            return False if batch is None else batch.defer  # the next schedule needs the tokens first

    source = Flushing([_batch(Phase.PREFILL, ["a"], defer=True), _batch(Phase.DECODE, ["a"], defer=False)])
    stepper = Stepper(_Runner(), _Exchange(), dp_attention=False, capacity=4, overlap=True)
    assert [stepper.step(source).settled_prefill for _ in range(2)] == [False, True]
    assert source.events == [("resolved", Phase.PREFILL), ("settled at once", Phase.DECODE)]
