"""Engine assembly shared by the job and the benchmark: model runner, DP exchange, step function, warmup, KV cache.

`Engine.start` does the startup in its fixed order (build + load, warmup through the step function,
KV-cache sizing agreed over every rank, decode CUDA-graph capture) and times each part; `new_source`
makes a fresh per-DP-rank scheduler over the same cache, so one engine can run several request sets
(the benchmark's cases).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist

from ..failure import CAPTURE_FAULT_WAIT_S, FaultHook, oom_guard, set_collective_timeout
from ..env_switches import log_switches
from ..host_gc import freeze_startup_heap
from ..job_plan import resolve_fp8_expert_block, resolve_fp8_linear_block, resolve_kv_dtype, resolve_kv_head_major
from ..parallel.dims import ConfigError, ParallelDims
from ..parallel.dp_meta import NUM_FIELDS, DPMetaExchange
from ..parallel.shm_exchange import make_shm_all_gather
from ..parallel.dp_exchange import enable_push_dp_exchange
from ..parallel.symm_all_reduce import enable_symmetric_all_reduce
from .block_manager import BlockManager
from .capture_vote import STRANDED_AFTER_S, all_captured
from .graph_capture import GraphCaptureSource
from .model_runner import ModelRunner
from .prefill_graphs import CaptureAbandoned
from .sampler_warmup import warm_sampler
from .scheduler import Scheduler
from .sequence import Sequence
from .sources import RequestSource, WarmupSource
from .step import StepStats, Stepper
from .stopping import StopChecker

log = logging.getLogger(__name__)
CPU_WARMUP_TOKENS = 32  # the warmup step's size off the GPU (see Engine.start)


@dataclass
class StartupTimes:
    """Seconds spent in each startup part on this rank (the benchmark reports them)."""

    build: float = 0.0
    """Constructing the sharded model on the device, plus random initialisation when there is no checkpoint."""
    load: float = 0.0
    """Reading this rank's slices of the checkpoint (0 for random weights)."""
    warmup: float = 0.0
    """The warmup step (kernel warmup and activation-memory profiling)."""
    kv_cache: float = 0.0
    """Sizing the KV cache (one all-reduce) and allocating it."""
    graphs: float = 0.0
    """Capturing the decode CUDA graphs (CUDA with runtime.cuda_graphs; else 0)."""

    @property
    def total(self) -> float:
        return self.build + self.load + self.warmup + self.kv_cache + self.graphs


class Engine:
    """One rank's started engine: the model with its KV cache, the DP exchange and the step function."""

    def __init__(self, runner: ModelRunner, stepper: Stepper, dims: ParallelDims, num_blocks: int, cfg: Any,
                 max_model_len: int, startup: StartupTimes):
        self.runner = runner
        self.stepper = stepper
        self.dims = dims
        self.num_blocks = num_blocks
        self.cfg = cfg
        self.max_model_len = max_model_len
        self.startup = startup
        self.warmup_steps = 0  # forward steps the warmup ran through Stepper.step
        self.frozen_objects = 0  # objects out of the garbage collector's reach since startup (runtime.freeze_gc)

    @classmethod
    def start(cls, hf_config: Any, model_dir: Optional[Path], dims: ParallelDims, device: torch.device,
              dtype: torch.dtype, max_model_len: int, cfg: Any) -> "Engine":
        """Build, load (random weights when `model_dir` is None), warm up and size the KV cache.

        `cfg` needs the job's parallel, scheduler, cache and runtime sections; `dims` must have its mesh.
        """
        times = StartupTimes()
        t0 = time.perf_counter()
        log_switches(log)
        kv_dtype = resolve_kv_dtype(cfg.cache.dtype, dtype)
        fp8_experts = resolve_fp8_expert_block(cfg.model.expert_dtype, hf_config, device, dims.mlp_ranks,
                                               cfg.parallel.moe)
        fp8_linears = resolve_fp8_linear_block(cfg.model.linear_dtype, hf_config, device)
        runner = ModelRunner(hf_config, model_dir, dims, device, dtype, cfg.cache.block_size, cfg.parallel.moe,
                             kv_dtype, fp8_experts, fp8_linears, cfg.model.linear_dtype == "fp8",
                             resolve_kv_head_major(cfg.cache.layout))
        # Before the warmup: the buffer's bytes count as used when the KV cache is sized, and graphs capture its path.
        all_reduce_mode = getattr(cfg.parallel, "all_reduce", "auto")
        enable_symmetric_all_reduce(all_reduce_mode, dims.tp_group, dims.tp, device, dtype,
                                    largest_tp_all_reduce(hf_config, dims, cfg.scheduler, dtype), hf_config.hidden_size)
        enable_push_dp_exchange(all_reduce_mode, dims, device, dtype, cfg.scheduler.max_num_seqs, hf_config.hidden_size)
        _sync(device)
        times.load = runner.load_stats.seconds
        times.build = time.perf_counter() - t0 - times.load
        shm = make_shm_all_gather(dims.dp_group, dims.dp, dims.dp_rank, NUM_FIELDS,
                                  cfg.parallel.exchange, cfg.runtime.load_timeout_s)
        exchange = DPMetaExchange(dims.dp_group, dims.dp, dims.dp_rank, device, shm)
        log.info("DP metadata exchange: %s", exchange.transport)
        s = cfg.scheduler
        capacity = s.max_num_seqs + (s.max_waiting_per_rank or s.max_num_seqs)  # requests a DP rank may hold
        stepper = Stepper(runner, exchange, cfg.parallel.dp_attention, capacity,
                          overlap=cfg.runtime.overlap_steps)

        t0 = time.perf_counter()
        if cfg.runtime.warmup:
            if device.type == "cuda":
                # The KV budget subtracts the activation peak above the weights, so measure only this step's.
                torch.cuda.reset_peak_memory_stats(device)
            # On the CPU there is no kernel to compile and no memory to measure: a short step still proves the
            # step function end to end without the full token budget's prefill (seconds per job there).
            num_tokens = s.max_num_batched_tokens if device.type == "cuda" else min(s.max_num_batched_tokens,
                                                                                     CPU_WARMUP_TOKENS)
            warmup = WarmupSource(num_tokens, s.max_num_seqs, hf_config.vocab_size, max_model_len)
            with oom_guard(cfg, "in the warmup step"):  # an OOM here names the settings to lower
                while not stepper.step(warmup).done:
                    pass
                if device.type == "cuda":  # compiles the sampler's kernels; its peak at max_num_seqs rows counts
                    warm_sampler(runner.model, hf_config.vocab_size, runner.dtype, device, s.max_num_seqs)
        _sync(device)
        times.warmup = time.perf_counter() - t0
        warmup_steps = stepper.stats.forward_steps  # proof that warmup went through the step function

        t0 = time.perf_counter()
        num_blocks = size_kv_cache(cfg, runner, dims, max_model_len)
        _sync(device)
        times.kv_cache = time.perf_counter() - t0

        t0 = time.perf_counter()
        if getattr(cfg.runtime, "cuda_graphs", True) and runner.graph_safe:
            capture = GraphCaptureSource(runner.enable_graphs(s.max_num_seqs, max_model_len))
            while not stepper.step(capture).done:  # the same step function: DP ranks agree on every bucket
                pass
            _sync(device)
            log.info("captured %d decode CUDA graphs in %.1f s", len(runner.graphs.graphs), time.perf_counter() - t0)
            if getattr(cfg.runtime, "prefill_graphs", True):
                capture_prefill_graphs(cfg, runner, dims)
        times.graphs = time.perf_counter() - t0
        stepper.stats = StepStats()  # the warmup is not part of any run's statistics
        engine = cls(runner, stepper, dims, num_blocks, cfg, max_model_len, times)
        engine.warmup_steps = warmup_steps
        if getattr(cfg.runtime, "freeze_gc", True):
            # Full collections in the step loop then skip all that startup made.
            engine.frozen_objects = freeze_startup_heap()
        return engine

    def new_source(self, stopper: StopChecker, on_finish: Callable[[Sequence], None],
                   source_cls: type = RequestSource, overlap_prefill: Optional[bool] = None) -> RequestSource:
        """A fresh scheduler over the whole (empty) KV cache; `source_cls` may subclass RequestSource;
        `overlap_prefill` overrides runtime.overlap_prefill (the benchmark's in-process A/B)."""
        s = self.cfg.scheduler
        blocks = BlockManager(self.num_blocks, self.cfg.cache.block_size,
                              getattr(self.cfg.cache, "enable_prefix_caching", True))
        scheduler = Scheduler(blocks, s.max_num_seqs, s.max_num_batched_tokens, self.max_model_len)
        runtime = self.cfg.runtime
        if overlap_prefill is None:
            overlap_prefill = getattr(runtime, "overlap_prefill", True)  # RuntimeConfig's default
        return source_cls(scheduler, stopper, on_finish, defer_prefill=runtime.overlap_steps and overlap_prefill)


def largest_tp_all_reduce(hf_config: Any, dims: ParallelDims, scheduler: Any, dtype: torch.dtype) -> int:
    """Bytes of the largest activation a TP group all-reduces: a step's tokens x hidden, times dp under DP
    attention (its MLP output is reduced over the TP group for every DP group's rows)."""
    rows = scheduler.max_num_batched_tokens * (dims.dp if dims.dp_attention and dims.dp > 1 else 1)
    return rows * hf_config.hidden_size * dtype.itemsize


def size_kv_cache(cfg: Any, runner: ModelRunner, dims: ParallelDims, max_model_len: int) -> int:
    """One block count for every rank: the minimum of what fits on each (or the configured count)."""
    block_size = cfg.cache.block_size
    if cfg.cache.num_blocks:
        fit = int(cfg.cache.num_blocks)
    else:
        fit = runner.blocks_that_fit(cfg.cache.gpu_memory_utilization, cfg.cache.cpu_kv_cache_gb)
        # More than every slot full at max_model_len can never be used.
        fit = min(fit, cfg.scheduler.max_num_seqs * -(-max_model_len // block_size))
    num_blocks = runner.min_over(fit, dims.world_group)
    if num_blocks * block_size < max_model_len:
        raise ConfigError(
            f"the KV cache holds {num_blocks * block_size} tokens per rank, fewer than model.max_model_len="
            f"{max_model_len}, so a long request could never run; lower model.max_model_len or give the "
            f"cache more room (cache.gpu_memory_utilization, cache.cpu_kv_cache_gb, cache.num_blocks)")
    runner.allocate_kv_cache(num_blocks)
    log.info("KV cache: %d blocks x %d tokens = %d tokens per DP group (%d over %d DP groups); %d bytes per token "
             "per rank in %s (%.2f GiB per rank)", num_blocks, block_size, num_blocks * block_size,
             num_blocks * block_size * dims.dp, dims.dp, runner.kv_bytes_per_token,
             str(runner.kv_dtype).removeprefix("torch."), num_blocks * block_size * runner.kv_bytes_per_token / 2**30)
    return num_blocks


def capture_prefill_graphs(cfg: Any, runner: ModelRunner, dims: ParallelDims) -> None:
    """Piecewise prefill graphs where the model takes them (ModelRunner.prefill_graphs_unfit). A rank whose capture
    fails (a layer that cannot be captured, no memory left) prefills eagerly, and so then does every rank: a TP
    group's ranks (under DP attention all ranks) must replay the same collectives. The ranks agree after every
    bucket, so none goes on to the next bucket's warm-up forward, whose collectives run, without the others; a
    failure that strands the others inside one fails the job (capture_vote.py)."""
    unfit = runner.prefill_graphs_unfit()
    if unfit is not None:
        log.info("prefill steps run eagerly: %s", unfit)
        return
    t0 = time.perf_counter()
    vote_group = dims.host_group if dims.world_size > 1 else None  # made here by every rank alike, before capturing
    if vote_group is not None:
        # A rank whose capture succeeded waits for the slowest as long as startup allows (a group made just now keeps
        # its connect timeout, HOST_GROUP_CONNECT_S).
        set_collective_timeout(dims, cfg.runtime.load_timeout_s)
    fault = FaultHook.from_env(dist.get_rank() if dist.is_initialized() else 0)  # tests only
    wait_s = CAPTURE_FAULT_WAIT_S if fault is not None and fault.kind == "capture" else STRANDED_AFTER_S
    try:
        buckets = runner.capture_prefill_graphs(cfg.scheduler.max_num_batched_tokens, cfg.parallel.dp_attention,
                                                lambda ok: all_captured(ok, vote_group, wait_s), fault)
    except CaptureAbandoned as e:
        runner.drop_prefill_graphs()
        log.warning("prefill CUDA graphs dropped, prefill steps run eagerly: %s (runtime.prefill_graphs=false skips "
                    "the attempt)", e)
        return
    _sync(runner.device)
    if buckets:
        log.info("captured %d prefill CUDA graphs in %.1f s: steps of up to %d tokens (%d buckets; larger steps keep "
                 "the GPU busy eagerly)", runner.prefill_graphs.num_graphs, time.perf_counter() - t0, buckets[-1],
                 len(buckets))
    else:
        log.info("prefill steps run eagerly: this model's layers keep the GPU busy at every step size "
                 "(engine/prefill_graphs.py)")


def _sync(device: torch.device) -> None:
    """Host clocks read after this see the device's work done (timings only)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
