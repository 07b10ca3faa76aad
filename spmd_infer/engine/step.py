"""The one step function: metadata row -> DP all-gather -> decisions from DPMeta -> forward -> sample.

Warmup, idle-rank dummy steps and real steps all go through `Stepper.step`; the forward needs a
DPMeta, and the only place one is made is here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Protocol

from ..data.request import Request
from ..parallel.dp_meta import DPMeta, DPMetaExchange, Field, Phase, make_row
from .assign import RequestQueue, assign_requests
from .in_flight import InFlight
from .model_runner import ModelRunner
from .scheduler import ScheduledBatch


class BatchSource(Protocol):
    """What a step runs: real requests (RequestSource) or a synthetic warmup batch."""

    eos_ids: frozenset[int]

    def schedule(self) -> ScheduledBatch: ...
    def metadata(self) -> dict[str, int]: ...
    def uses_cache(self) -> bool: ...
    def generator_keys(self, batch: ScheduledBatch) -> list[int]: ...
    def postprocess(self, batch: ScheduledBatch, tokens: list[int], logprobs: list) -> None: ...
    # Overlapped steps (runtime.overlap_steps): a source whose can_defer() may say True also has
    # advance(batch) -> placeholder positions, and resolve(batch, positions, tokens) (see RequestSource).
    # A source whose sequences ask for prompt log-probabilities has record_prompt_logprobs (see RequestSource).
    def can_defer(self, batch: Optional[ScheduledBatch] = None) -> bool: ...
    def add(self, request: Request) -> None: ...


@dataclass
class StepResult:
    meta: DPMeta
    done: bool
    ran_forward: bool = False
    dummy: bool = False
    seconds: float = 0.0
    phase: Phase = Phase.IDLE
    num_tokens: int = 0
    settled_prefill: bool = False
    """This step waited for an overlapped prefill step's tokens: its seconds hold that prefill's GPU tail
    (runtime.overlap_prefill), so the benchmark counts them as prefill time, not decode time."""
    launch_seconds: float = 0.0
    """Host seconds from the step's start until its forward was launched (the exchange, scheduling, packing and the
    launches; no wait for the GPU unless its launch queue was full): beside `seconds`, whether a slow step was the
    host's or the GPU's. 0 without a forward of its own, and on CPUs (the forward runs as it is called)."""


@dataclass
class StepStats:
    steps: int = 0
    forward_steps: int = 0
    dummy_steps: int = 0
    idle_steps: int = 0
    exchange_seconds: float = 0.0
    """DP metadata exchange, waiting for slower DP ranks included."""
    wait_seconds: float = 0.0
    """The part of exchange_seconds spent waiting for slower DP ranks (DPMeta.wait_seconds)."""
    step_seconds: float = 0.0
    overlapped_prefills: int = 0
    """Prefill steps launched with their sampled tokens left on the device (runtime.overlap_prefill)."""
    history: list = field(default_factory=list)  # (step, tokens per DP rank) for load reports


class Stepper:
    def __init__(self, runner: ModelRunner, exchange: DPMetaExchange, dp_attention: bool, capacity: int,
                 overlap: bool = False):
        self.runner = runner
        self.exchange = exchange
        self.dp_attention = dp_attention
        self.capacity = capacity  # requests a DP rank may hold (running + waiting)
        self.overlap = overlap
        self.in_flight: Optional[InFlight] = None  # a launched step whose tokens the host lacks
        self.stats = StepStats()

    def step(self, source: BatchSource, queue: Optional[RequestQueue] = None) -> StepResult:
        start = time.perf_counter()
        prefill_in_flight = self.in_flight is not None and self.in_flight.batch.phase is Phase.PREFILL
        # 0. Overlapped steps: the previous step's tokens are still on the device. Take them now unless the
        # next schedule can do without them (a decode that preempts nothing, or a prefill of new requests).
        if self.in_flight is not None and not source.can_defer():
            self.flush(source)
        # 1. This rank's row, from the batch it is about to run.
        batch = source.schedule()
        if self.in_flight is not None and not batch:
            self.flush(source)  # every running sequence ends with its in-flight token: nothing to run
        # Whether this batch leaves its tokens on the device (decided here, from the batch alone): only such a launch
        # settles the step in flight after it; one settled at once runs new requests and leaves it in flight.
        defer = bool(batch) and not batch.capture_bucket and self.overlap and source.can_defer(batch)
        # This step waits for an overlapped prefill's tokens: flushed above, or after its own launch.
        settles_prefill = prefill_in_flight and (self.in_flight is None or defer)
        row = make_row(num_tokens=batch.num_tokens, num_seqs=batch.num_seqs,
                       phase=batch.phase if batch else Phase.IDLE, can_graph=self.runner.can_graph(batch),
                       settles_prefill=settles_prefill, **source.metadata())
        # 2. The one collective outside the forward.
        meta = self.exchange.gather(row)
        self.stats.exchange_seconds += meta.exchange_seconds
        self.stats.wait_seconds += meta.wait_seconds
        # 3. Decisions every rank computes identically from DPMeta.
        queue_empty = queue is None or queue.exhausted
        if not meta.any_work and not meta.any_unfinished and queue_empty:
            # Its seconds: the last step's in-flight tokens, settled above when nothing was left to run.
            return StepResult(meta=meta, done=True, seconds=time.perf_counter() - start,
                              settled_prefill=settles_prefill)
        if queue is not None:
            for request, dp_rank in assign_requests(queue, meta, self.capacity):
                if dp_rank == meta.dp_rank:
                    source.add(request)
        # 4. Forward: real, dummy (DP attention needs every DP rank in the MLP collectives), or none.
        result = StepResult(meta=meta, done=False, phase=batch.phase if batch else Phase.IDLE,
                            num_tokens=batch.num_tokens, settled_prefill=settles_prefill)
        bucket = self._graph_bucket(batch, meta)
        if batch.capture_bucket:
            self.runner.capture_graph(batch.capture_bucket, meta)
            result.ran_forward = True
        elif batch:
            launched = self._forward(source, batch, meta, bucket, defer)
            if self.runner.device.type == "cuda":  # (a CPU runs the forward as it is called: no launch to time)
                result.launch_seconds = launched - start
            result.ran_forward = True
        elif self.dp_attention and meta.any_work:
            self.runner.run_dummy(meta, bucket)
            result.dummy = True
        self._account(result, start)
        return result

    def _forward(self, source: BatchSource, batch: ScheduledBatch, meta: DPMeta, bucket: Optional[int],
                 defer: bool) -> float:
        """Run and sample this rank's batch; settle its tokens now, or (`defer`: overlapped) in the next step.
        Returns when (perf_counter) the forward was launched."""
        previous = self.in_flight  # its tokens are this batch's inputs, read on the device
        feedback = previous.feedback(batch) if previous is not None else None
        fb = self.runner.prepare(batch, meta, source.uses_cache(), bucket, feedback)
        logits = self.runner.run(fb, bucket, batch.num_seqs)
        launched = time.perf_counter()
        keys = source.generator_keys(batch)
        if not defer:
            # Settled now: no overlap, or a step that needs its tokens on the host (see can_defer). Its requests are
            # new if it prefills, so an in-flight step stays in flight.
            tokens, logprobs = self.runner.sample(batch, logits, source.eos_ids, keys)
            if fb.prompt_scores is not None:
                source.record_prompt_logprobs(batch, fb.prompt_counts, fb.prompt_scores)
            source.postprocess(batch, tokens, logprobs)
            return launched
        # Leave this step's tokens on the device; settle the previous step's while the GPU computes this one.
        self.stats.overlapped_prefills += batch.phase is Phase.PREFILL
        tokens = self.runner.sample_on_device(batch, logits, source.eos_ids, keys)
        self.in_flight = InFlight.launch(batch, tokens, source.advance(batch))
        if previous is not None:
            source.resolve(previous.batch, previous.positions, previous.tokens())
        return launched

    def flush(self, source: BatchSource) -> None:
        """Settle the in-flight step's tokens (waits for its forward): before a step that needs them, and
        before the loop stops early."""
        if self.in_flight is not None:
            step, self.in_flight = self.in_flight, None
            source.resolve(step.batch, step.positions, step.tokens())

    def _graph_bucket(self, batch: ScheduledBatch, meta: DPMeta) -> Optional[int]:
        """The CUDA-graph bucket this step replays, or None for an eager forward.

        With DP attention the graph holds cross-DP collectives, so either every DP rank replays the same
        bucket (sized for the largest batch) or none does; decoupled ranks decide alone.
        """
        if self.runner.graphs is None:
            return None
        if self.dp_attention and meta.dp > 1:
            if not meta.all_can_graph or not meta.any_work:
                return None
            return self.runner.graphs.bucket_for(max(meta.column(Field.NUM_SEQS)))
        if not batch or not meta.get(Field.CAN_GRAPH):
            return None
        return self.runner.graphs.bucket_for(len(batch.seqs))

    def _account(self, result: StepResult, start: float) -> None:
        s = self.stats
        s.steps += 1
        s.forward_steps += result.ran_forward
        s.dummy_steps += result.dummy
        s.idle_steps += not (result.ran_forward or result.dummy)
        result.seconds = time.perf_counter() - start
        s.step_seconds += result.seconds
        s.history.append(result.meta.num_tokens)
