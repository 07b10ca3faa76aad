"""Runs one case through the real step function and turns its per-step records into rates, MBU and MFU."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from ..engine.assign import RequestQueue
from ..engine.engine import Engine
from ..engine.scheduler import ScheduledBatch
from ..engine.sources import RequestSource
from ..engine.stopping import StopChecker
from ..parallel.dp_meta import Field, Phase
from .ceilings import Ceilings
from .cost import ModelCost
from .workloads import Case, make_requests


@dataclass
class StepRecord:
    seconds: float
    exchange_seconds: float
    phase: Phase
    """This rank's phase (IDLE when it ran no forward of its own)."""
    dp_tokens: list[int]
    dp_phases: list[int]
    wait_seconds: float = 0.0
    """The part of exchange_seconds spent waiting for slower DP ranks."""
    chunks: list[tuple[int, int]] = field(default_factory=list)
    """(new tokens, context after the step) of each sequence this rank ran."""
    sampled: int = 0
    dp_work_us: list[int] = field(default_factory=list)
    """Each DP rank's own work since its previous exchange (Field.WORK_US), in microseconds."""
    settled_prefill: bool = False
    """The step waited for an overlapped prefill's tokens (StepResult.settled_prefill): its seconds are mostly
    that prefill's GPU time, so they count as prefill time."""
    dp_settles_prefill: list[int] = field(default_factory=list)
    """Per DP rank, 1 if it settled an overlapped prefill in this step (Field.SETTLES_PREFILL): a rank that waits
    for a prefill holds the others up too (the next exchange, DP attention's collectives), so such a step stays out
    of the decode figures whichever rank it was."""
    launch_seconds: float = 0.0
    """Host seconds until this rank's forward was launched (StepResult.launch_seconds); 0 without one."""


class TimedSource(RequestSource):
    """A RequestSource that remembers what each step ran and when each sequence got its first token."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.started = time.perf_counter()
        self.last: Optional[ScheduledBatch] = None
        self.first_token_at: dict[int, float] = {}

    def schedule(self) -> ScheduledBatch:
        self.last = super().schedule()
        return self.last

    def postprocess(self, batch: ScheduledBatch, tokens: list[int], logprobs: list) -> None:
        self._first_tokens(batch)  # tokens are on the host already: sampling synchronised
        super().postprocess(batch, tokens, logprobs)

    def resolve(self, batch: ScheduledBatch, positions: list[int], tokens: list[int]) -> None:
        self._first_tokens(batch)  # an overlapped prefill's first tokens reach the host one step late
        super().resolve(batch, positions, tokens)

    def _first_tokens(self, batch: ScheduledBatch) -> None:
        now = time.perf_counter() - self.started
        for seq in batch.sampled_seqs:
            self.first_token_at.setdefault(seq.index, now)


def run_case(engine: Engine, case: Case, sampling, seed: int,
             on_step: Optional[Callable[[StepRecord], None]] = None,
             overlap_prefill: Optional[bool] = None) -> tuple[list[StepRecord], TimedSource, float]:
    """All of `case` through Stepper.step with a RequestQueue (DP assignment as in a job); (records, source, wall).

    `on_step(record)` runs after each step (the profiler uses it to start at the first decode step);
    `overlap_prefill` overrides runtime.overlap_prefill (bench.overlap_prefill_ab)."""
    runner = engine.runner
    requests = make_requests(case, runner.hf_config.vocab_size, seed, sampling)

    def on_error(err) -> None:
        raise RuntimeError(f"benchmark request rejected: {err.message}")

    queue = RequestQueue(iter(requests), on_error)
    stopper = StopChecker(frozenset(), engine.max_model_len, None)
    _sync(runner.device)
    source = engine.new_source(stopper, lambda seq: None, TimedSource, overlap_prefill)
    records: list[StepRecord] = []
    started = source.started = time.perf_counter()
    while True:
        result = engine.stepper.step(source, queue)
        meta = result.meta
        rec = StepRecord(result.seconds, meta.exchange_seconds, result.phase if result.ran_forward else Phase.IDLE,
                         meta.num_tokens, meta.column(Field.PHASE), wait_seconds=meta.wait_seconds,
                         dp_work_us=meta.column(Field.WORK_US), settled_prefill=result.settled_prefill,
                         dp_settles_prefill=meta.column(Field.SETTLES_PREFILL), launch_seconds=result.launch_seconds)
        if result.done:
            if rec.settled_prefill:  # a prefill-only case: its last step's GPU time waited for here
                records.append(rec)
            break
        if result.ran_forward:
            batch = source.last
            rec.chunks = [(n, s.num_computed) for s, n in zip(batch.seqs, batch.num_new_tokens)]  # after the step
            rec.sampled = sum(batch.sampled)
        records.append(rec)
        if on_step is not None:
            on_step(rec)
    _sync(runner.device)
    return records, source, time.perf_counter() - started


def case_metrics(case: Case, records: list[StepRecord], source: TimedSource, wall: float, cost: ModelCost,
                 ceilings: Ceilings, dp_attention: bool, num_preemptions: int) -> dict:
    """Rates over all DP ranks (from DPMeta), per-step figures of this rank (its steps, bytes and FLOPs)."""
    ttft = sorted(source.first_token_at.values())
    step_s = sum(r.seconds for r in records)
    out = {
        "workload": case.workload, "name": case.name, "num_seqs": case.num_seqs,
        "prompt_tokens": case.prompt_tokens, "output_tokens": case.output_tokens, "wall_s": wall,
        "output_tok_s": case.output_tokens / wall, "total_tok_s": (case.prompt_tokens + case.output_tokens) / wall,
        "ttft_s": _summary(ttft), "steps": len(records),
        # The exchange's share of step time, split into the collective itself and waiting for DP ranks
        # whose previous step took longer (lockstep under load imbalance), which the design does not remove.
        "exchange_share": sum(r.exchange_seconds for r in records) / max(step_s, 1e-12),
        "exchange_collective_share": sum(r.exchange_seconds - r.wait_seconds for r in records) / max(step_s, 1e-12),
        "dp_wait_share": sum(r.wait_seconds for r in records) / max(step_s, 1e-12),
        "preemptions": num_preemptions,
    }
    if len(records) and len(records[0].dp_phases) > 1:
        # Whose work the lockstep waits on: each DP rank's own work summed over the case (a rank steadily above the
        # others is load imbalance or a slower rank; ranks even in sum but apart step by step is lockstep), and
        # the steps it sat out with nothing to run.
        dp = len(records[0].dp_phases)
        out["dp_ranks"] = {
            "work_s": [sum(r.dp_work_us[i] for r in records if r.dp_work_us) / 1e6 for i in range(dp)],
            "idle_steps": [sum(r.dp_phases[i] == Phase.IDLE for r in records) for i in range(dp)],
        }

    def mlp_tokens(r: StepRecord) -> int:
        # DP attention: the MLPs run every DP group's tokens (an idle group contributes its 1-token dummy).
        return sum(max(n, 1) for n in r.dp_tokens) if dp_attention and len(r.dp_tokens) > 1 else r_tokens(r)

    # Decode: steps in which no DP rank prefills, so the step time is decode time everywhere; without the steps in
    # which a rank waited for an overlapped prefill's tokens (their time is that prefill's).
    decode = [r for r in records if Phase.DECODE in r.dp_phases and Phase.PREFILL not in r.dp_phases
              and not r.settled_prefill and not any(r.dp_settles_prefill)]
    mine = [r for r in decode if r.phase == Phase.DECODE]
    if decode:
        seconds = sum(r.seconds for r in decode)
        tokens = sum(n for r in decode for n, p in zip(r.dp_tokens, r.dp_phases) if p == Phase.DECODE)
        weights = sum(cost.weight_bytes(r_tokens(r), mlp_tokens(r), r.sampled) for r in mine)
        kv = sum(cost.kv_bytes([ctx for _, ctx in r.chunks]) for r in mine)
        mine_s = max(sum(r.seconds for r in mine), 1e-12)
        out["decode"] = {
            "steps": len(decode), "median_step_s": statistics.median(r.seconds for r in (mine or decode)),
            "tok_s": tokens / seconds, "batch_mean": tokens / len(decode),
            "weight_bytes_per_step": weights / max(len(mine), 1), "kv_bytes_per_step": kv / max(len(mine), 1),
            "bytes_per_s": (weights + kv) / mine_s,
            "mbu": (weights + kv) / mine_s / ceilings.bandwidth_bytes_per_s,
        }
    prefill = [r for r in records if r.phase == Phase.PREFILL]
    if prefill:
        # An overlapped prefill step's GPU time lands in the step that settles its tokens (the next prefill's, or
        # the first decode step's after the last one), so those settling steps' seconds are prefill seconds.
        timed = [r for r in records if r.phase == Phase.PREFILL or r.settled_prefill]
        seconds = max(sum(r.seconds for r in timed), 1e-12)
        flops = sum(cost.flops(r.chunks, mlp_tokens(r), r.sampled, prefill=True) for r in prefill)
        out["prefill"] = {
            "steps": len(prefill), "seconds": seconds, "tok_s_this_rank": sum(map(r_tokens, prefill)) / seconds,
            # each step's, in order: which steps a slow prefill spent its time in (they move between runs), and
            # how much of each the host took to launch its forward (a settling step's own: none, or a decode's)
            "step_s": [round(r.seconds, 5) for r in timed],
            "launch_s": [round(r.launch_seconds, 5) for r in timed],
            # ... of which (in the DP exchange before the launch) waiting for slower DP ranks: the host's share of a
            # step leaves it out, or a mixed DP-attention step would look host-bound for the other rank's prefill
            "wait_s": [round(r.wait_seconds, 5) for r in timed],
            "flops": flops, "flops_per_s": flops / seconds, "mfu": flops / seconds / ceilings.matmul_flops_per_s,
        }
    return out


def r_tokens(r: StepRecord) -> int:
    return sum(n for n, _ in r.chunks)


def _summary(values: list[float]) -> dict:
    if not values:
        return {}
    return {"median": statistics.median(values), "mean": statistics.fmean(values), "max": values[-1],
            "p90": values[min(len(values) - 1, int(0.9 * len(values)))]}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# The caching allocator's counters a run's slowness may come from: retries (an allocation failed, so the allocator
# synchronised, freed every cached block and tried again) and cudaMalloc / cudaFree calls (each one synchronising).
ALLOCATOR_COUNTERS = {"retries": "num_alloc_retries", "device_allocs": "num_device_alloc",
                      "device_frees": "num_device_free"}


def allocator_counts(device: torch.device) -> Optional[dict]:
    """The caching allocator's counters on `device` now (ALLOCATOR_COUNTERS); None off CUDA."""
    if device.type != "cuda":
        return None
    stats = torch.cuda.memory_stats(device)
    return {name: int(stats.get(key, 0)) for name, key in ALLOCATOR_COUNTERS.items()}


def allocator_delta(before: Optional[dict], after: Optional[dict]) -> Optional[dict]:
    """What the counters rose by between two allocator_counts."""
    return None if before is None or after is None else {k: after[k] - before[k] for k in after}


def median_run(runs: list[dict]) -> dict:
    """Of one case's timed runs (case_metrics), the one with the median output rate (the lower middle of an even
    count), its figures whole; with several runs, "runs" lists each one's output rate, decode step and MBU, and
    its prefill seconds, whole and step by step (they move more between runs than decode does), its full garbage
    collections and the caching allocator's retries and device allocations."""
    chosen = dict(sorted(runs, key=lambda r: r["output_tok_s"])[(len(runs) - 1) // 2])
    if len(runs) > 1:
        chosen["runs"] = [{"output_tok_s": r["output_tok_s"],
                           "decode_median_step_s": r.get("decode", {}).get("median_step_s"),
                           "decode_mbu": r.get("decode", {}).get("mbu"),
                           "prefill_s": r.get("prefill", {}).get("seconds"),
                           "prefill_step_s": r.get("prefill", {}).get("step_s"),
                           "prefill_launch_s": r.get("prefill", {}).get("launch_s"),
                           "gc_full": r.get("gc_full"), "allocator": r.get("allocator")} for r in runs]
    return chosen
