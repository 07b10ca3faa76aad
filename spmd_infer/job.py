"""One batch job on every rank: validate, build the mesh, load, warm up, size the KV cache, step until done, merge."""

from __future__ import annotations

import itertools
import logging
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist

from .data.completions import OutputRows
from .data.openai_batch import detect_format
from .data.reader import read_requests
from .data.writer import ShardWriter, shard_dir_for, shard_path
from .engine.assign import RequestQueue
from .engine.sequence import Sequence
from .engine.engine import Engine
from .engine.model_runner import module_bytes
from .engine.stopping import StopChecker
from .failure import FaultHook, JobStopped, begin_job, leave, oom_guard, set_collective_timeout
from .host_gc import FullCollections, thaw
from .job_plan import JobPlan
from .model_defaults import log_applied
from .parallel.dims import forget_host_group, init_distributed
from .parallel.dp_exchange import forget_push_dp_exchanges
from .parallel.symm_all_reduce import forget_symmetric_all_reduces
from .parallel.dp_meta import Field
from .progress import Progress
from .report import Timeline, job_metrics
from .resume import ResumeState, decide as decide_resume, publish, release as release_output
from .stop import StopRequest

log = logging.getLogger(__name__)


@dataclass
class JobSummary:
    requests: int
    errors: int
    prompt_tokens: int
    output_tokens: int
    wall_seconds: float
    output: str
    kv_capacity_tokens: int
    steps: int
    preemptions: int = 0  # on this rank
    prefill_chunks: int = 0  # on this rank
    overlapped_prefills: int = 0  # prefill steps this rank left in flight (runtime.overlap_prefill)
    prefix_cached_tokens: int = 0  # prompt tokens this rank served from the prefix cache
    warmup_steps: int = 0  # forward steps of the warmup, run through the step function with DPMeta
    prefill_graph_replays: dict = field(default_factory=dict)
    """Steps this rank replayed from prefill CUDA graphs, by its phase in them: prefill, and under DP attention decode
    and idle (steps another DP rank prefilled); {} without prefill graphs."""
    metrics: dict = field(default_factory=dict)  # report/metrics.py: what metrics.json holds
    resumed: int = 0  # rows finished by earlier runs of the same job (resume.py)
    already_complete: bool = False  # the output was complete before this run: nothing ran
    weight_bytes: int = 0  # this rank's share of the model's weights (parameters and buffers)
    gc_frozen_objects: int = 0  # objects frozen at startup, out of full collections' reach (runtime.freeze_gc)
    gc_full_collections: int = 0  # full (generation-2) garbage collections during this rank's step loop
    gc_full_seconds: float = 0.0  # the host time they took (the GPU idles once it exceeds the step in flight)

    def lines(self) -> list[str]:
        tps = self.output_tokens / max(self.wall_seconds, 1e-9)
        if self.already_complete:
            return [f"output: {self.output} is already complete ({self.requests} rows, from an earlier run with the "
                    f"same configuration); nothing to do. Set data.overwrite=true to run it again"]
        resumed = f"; {self.resumed} done by earlier runs" if self.resumed else ""
        return [f"requests: {self.requests} ({self.errors} with errors{resumed})",
                f"tokens: {self.prompt_tokens} prompt, {self.output_tokens} generated in {self.steps} steps",
                f"time: {self.wall_seconds:.2f} s, {tps:.1f} generated tok/s",
                f"output: {self.output}"]


def run_job(cfg: Any) -> Optional[JobSummary]:
    """Run the job described by `cfg` on this rank; returns the summary (on every rank)."""
    started = time.perf_counter()
    plan = JobPlan.from_config(cfg)  # every check that needs no collective, identical on all ranks
    init_distributed(plan.device, cfg.runtime.load_timeout_s)
    dims = plan.dims
    dims.build_mesh(plan.device)
    begin_job(plan.output)
    set_collective_timeout(dims, cfg.runtime.load_timeout_s)  # mesh groups otherwise keep torch's defaults
    data_format = detect_format(plan.input, cfg.data.format)  # our rows or OpenAI batch rows, answered in kind
    # Decided once, on rank 0, before any model work; rank 0 also locks the output against a second job.
    resume = decide_resume(cfg, plan, dims, data_format)
    stop = StopRequest(dims)
    try:
        if resume.complete:
            log.info("%s is already complete (%d rows); nothing to do", plan.output, resume.num_rows)
            return JobSummary(requests=resume.num_rows, errors=0, prompt_tokens=0, output_tokens=0,
                              wall_seconds=time.perf_counter() - started, output=str(plan.output),
                              kv_capacity_tokens=0, steps=0, resumed=resume.num_rows, already_complete=True)
        stop.install()
        return _run(cfg, plan, dims, resume, stop, data_format, started)
    finally:
        # The engine is dropped after the job, also one that failed or stopped (several jobs in one process each
        # freeze their own): its reference cycles, frozen at its start, must be reachable for its memory to come back.
        thaw()
        stop.restore()
        release_output(plan.output)


def _run(cfg: Any, plan: JobPlan, dims, resume: ResumeState, stop: StopRequest, data_format: str,
         started: float) -> JobSummary:
    # Build, load, warm up, size the KV cache and capture graphs: all through the one step function.
    engine = Engine.start(plan.hf_config, plan.model_dir, dims, plan.device, plan.dtype, plan.max_model_len, cfg)
    stepper, num_blocks = engine.stepper, engine.num_blocks

    shard_dir = shard_dir_for(plan.output)
    writer = ShardWriter(shard_path(shard_dir, resume.run, dims.dp_rank) if dims.is_tp_leader else None)
    write_errors = dims.is_tp_leader and dims.dp_rank == 0  # every rank sees every error; one writes them

    out_rows = OutputRows(data_format == "openai", plan.tokenizer, plan.model_dir.name)

    def on_error(err) -> None:
        if write_errors:
            writer.write(err.index, out_rows.error(err))

    def on_finish(seq: Sequence) -> None:
        row = out_rows.finished(seq)  # None until the request's last completion (sampling.n) is done
        if row is not None:
            writer.write(seq.index, row)

    log_applied(plan.model_defaults, cfg.sampling)
    rows = read_requests(str(plan.input), plan.tokenizer, plan.sampling, plan.max_model_len, plan.hf_config.vocab_size,
                         data_format, skip=resume.is_done if resume.num_done else None)
    queue = RequestQueue(rows, on_error)
    source = engine.new_source(StopChecker(plan.eos_ids, plan.max_model_len, plan.tokenizer), on_finish)
    scheduler, blocks = source.scheduler, source.scheduler.blocks
    progress = Progress(cfg.runtime.progress and dist.get_rank() == 0, cfg.runtime.progress_interval_s, str(plan.input),
                        already_done=resume.num_done)
    timeline = Timeline(dims.dp, num_blocks, cfg.parallel.dp_attention)
    fault = FaultHook.from_env(dist.get_rank())  # tests only
    set_collective_timeout(dims, cfg.runtime.step_timeout_s)
    stepper.exchange.set_timeout(cfg.runtime.step_timeout_s)
    loop_started = time.perf_counter()
    meta = None
    # Full collections in the loop stall the host (the startup heap is frozen: host_gc.py); counted for the summary.
    with FullCollections() as full_gc:
        for step in itertools.count():
            with oom_guard(cfg, f"in step {step}"):
                if fault is not None:
                    fault.check(step)
                # A signal's flag rides in this step's metadata row (stop.py).
                stepper.exchange.stop_requested = stop.signum
                result = stepper.step(source, queue)
            meta = result.meta
            timeline.record(meta, final=result.done)
            if result.done:
                break
            signum = stop.agreed(step, meta)
            if signum:
                stepper.flush(source)  # an overlapped step's tokens: finished sequences are saved too
                progress.close()
                writer.close()
                saved = resume.num_done + queue.num_errors + sum(meta.column(Field.FINISHED))
                name = signal.Signals(signum).name
                raise JobStopped(signum, f"stopped by {name} after step {step}: at least {saved} of "
                                         f"{resume.num_rows} rows are saved in {shard_dir}; rerun the same command "
                                         "to resume")
            writer.tick()
            progress.update(meta, errors=queue.num_errors)
    progress.close()
    writer.close()
    set_collective_timeout(dims, cfg.runtime.load_timeout_s)  # the others wait while rank 0 merges
    dist.barrier(group=dims.world_group)
    num_rows = resume.num_rows
    if dist.get_rank(dims.world_group) == 0:
        publish(plan, resume)
    dist.barrier(group=dims.world_group)
    summary = JobSummary(requests=num_rows, errors=queue.num_errors, prompt_tokens=queue.prompt_tokens,
                         output_tokens=sum(meta.column(Field.OUTPUT_TOKENS)),
                         wall_seconds=time.perf_counter() - started, output=str(plan.output),
                         kv_capacity_tokens=num_blocks * cfg.cache.block_size * dims.dp, steps=stepper.stats.steps,
                         preemptions=scheduler.num_preemptions, prefill_chunks=scheduler.num_prefill_chunks,
                         prefix_cached_tokens=blocks.num_cached_tokens, warmup_steps=engine.warmup_steps,
                         prefill_graph_replays=engine.runner.prefill_graph_replays,
                         resumed=resume.num_done, weight_bytes=module_bytes(engine.runner.model),
                         overlapped_prefills=stepper.stats.overlapped_prefills,
                         gc_frozen_objects=engine.frozen_objects, gc_full_collections=full_gc.count,
                         gc_full_seconds=full_gc.seconds)
    summary.metrics = job_metrics(summary, timeline, dims, plan.device, cfg.cache.block_size)  # a collective
    st = stepper.stats
    log.info("step loop: %d steps (%d forward, %d dummy, %d idle) in %.2f s; DP metadata exchange %.1f%% of it "
             "(%.1f%% the collective, %.1f%% waiting for slower DP ranks); %d preemptions on this rank; %d full "
             "garbage collections, %.2f s", st.steps,
             st.forward_steps, st.dummy_steps, st.idle_steps, time.perf_counter() - loop_started,
             100 * st.exchange_seconds / max(st.step_seconds, 1e-9),
             100 * (st.exchange_seconds - st.wait_seconds) / max(st.step_seconds, 1e-9),
             100 * st.wait_seconds / max(st.step_seconds, 1e-9), scheduler.num_preemptions, full_gc.count,
             full_gc.seconds)
    if summary.prefill_graph_replays:
        log.info("prefill CUDA graphs replayed in %s steps (by this rank's phase in them)",
                 ", ".join(f"{n} {phase}" for phase, n in summary.prefill_graph_replays.items() if n) or "no")
    return summary


def run_to_end(entry: Callable[[], None]) -> None:
    """Run a command's (Hydra) entry point, then end the process by end_process. Errors that Hydra itself raises
    (bad overrides, config composition) leave the ordinary way; the job's own failures never return here."""
    try:
        entry()
    except BaseException:
        release_distributed()
        raise
    end_process()


def end_process() -> None:
    """Leave a process whose work is done.

    A multi-rank process leaves by os._exit with its process group still up: every rank has passed the job's
    last collective, and tearing gloo's group down while a peer exits aborts a rank now and then (SIGABRT or
    SIGBUS inside destroy_process_group, after a job that succeeded), which torchrun reports as a failed job.
    One rank alone has no peer to race and exits the ordinary way.
    """
    if dist.is_initialized() and dist.get_world_size() > 1:
        leave(0)
    release_distributed()


def release_distributed(keep_group: bool = False) -> None:
    """Free cached device memory and (unless `keep_group`: more jobs follow in this process) the process group."""
    if dist.is_initialized() and not keep_group:
        dist.destroy_process_group()
        forget_host_group()
        forget_symmetric_all_reduces()
        forget_push_dp_exchanges()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
