"""One benchmark run on every rank: plan, ceilings, engine startup, the cases, the hf baseline, the report."""

from __future__ import annotations

import gc
from functools import partial
import logging
import os
import time
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist

from spmd_kernels import compiled_variants

from ..engine.engine import Engine
from ..host_gc import FullCollections, thaw
from ..job_plan import check_parallel_choices, resolve_dtype
from ..layers.linear import fp8_linear_counts
from ..layers.rotary import max_positions
from ..models.attention_window import hold_to_window
from ..models.registry import check_layout, model_class
from ..parallel.dims import ConfigError, ParallelDims, init_distributed, resolve_device
from ..parallel.dp_exchange import dp_exchange_path
from ..parallel.symm_all_reduce import all_reduce_path
from ..sampling_params import SamplingParams
from .ceilings import measure_ceilings
from .checkpoint import BenchCheckpoint
from .cost import ModelCost
from .hf_baseline import ORDERS as HF_ORDERS
from .hf_baseline import HFBaseline, compare
from .measure import allocator_counts, allocator_delta, case_metrics, median_run, run_case
from .presets import preset_config
from .profile import PHASES, profile_case, profile_lines
from .report import console_lines, write_json
from .workloads import build_cases, warm_case

log = logging.getLogger(__name__)


def run_bench(cfg: Any) -> Optional[dict]:
    """Run the benchmark described by `cfg` on this rank; returns the report on global rank 0, else None."""
    entered = time.perf_counter()
    launched = _process_age()
    b = cfg.bench
    # Every check before the first collective, identical on all ranks (as the job's plan).
    if cfg.model.path:
        from transformers import AutoConfig

        hf_config, name = AutoConfig.from_pretrained(Path(cfg.model.path).expanduser()), Path(cfg.model.path).name
    else:
        hf_config, name = preset_config(b.preset), b.preset
    model_class(hf_config)
    dims = ParallelDims(cfg.parallel.dp, cfg.parallel.tp, int(os.environ.get("WORLD_SIZE", "1")),
                        cfg.parallel.dp_attention)
    dims.validate()
    check_layout(hf_config, dims.tp)
    check_parallel_choices(cfg.parallel)
    if b.baseline not in ("none", "hf"):
        raise ConfigError(f"bench.baseline={b.baseline!r} must be none or hf")
    if not b.hf_orders or any(o not in HF_ORDERS for o in b.hf_orders):
        raise ConfigError(f"bench.hf_orders={list(b.hf_orders)} must list one or more of {', '.join(HF_ORDERS)}")
    if b.repeats < 1:
        raise ConfigError(f"bench.repeats={b.repeats} must be at least 1")
    if b.overlap_prefill_ab and not cfg.runtime.overlap_steps:
        raise ConfigError("bench.overlap_prefill_ab=true compares prefill steps left in flight with settled ones; "
                          "that needs runtime.overlap_steps=true (with synchronous steps nothing is left in flight)")
    if b.profile_phase not in PHASES:
        raise ConfigError(f"bench.profile_phase={b.profile_phase!r} must be one of {', '.join(PHASES)}")
    if b.checkpoint_format not in ("model", "fp8"):
        raise ConfigError(f"bench.checkpoint_format={b.checkpoint_format!r} must be model or fp8")
    if b.checkpoint_format == "fp8" and not (b.load and not cfg.model.path):
        raise ConfigError("bench.checkpoint_format=fp8 says how bench.load=true writes the random weights: set "
                          "bench.load=true (and no model.path, whose checkpoint is read as it is)")
    device = resolve_device(cfg.runtime.device)
    dtype = resolve_dtype(cfg.model.dtype, device)
    cases = build_cases(b)
    warm = [warm_case()] if b.warm_case else []
    max_model_len = int(cfg.model.max_model_len or max(c.max_len for c in cases + warm))
    if max_model_len > max_positions(hf_config) or max_model_len < max(c.max_len for c in cases):
        raise ConfigError(f"the workload needs {max(c.max_len for c in cases)} tokens per sequence; "
                          f"model.max_model_len={max_model_len} must hold that and stay within the model's "
                          f"positions ({max_positions(hf_config)})")
    hold_to_window(hf_config, max_model_len, requested=True)  # a sliding-window model's cases must fit its window

    started = time.perf_counter()
    init_distributed(device)
    dims.build_mesh(device)
    init_s = time.perf_counter() - started
    rank0 = dist.get_rank() == 0
    ceilings = measure_ceilings(device, dtype, b.copy_mib, b.matmul_n, b.ceiling_repeats)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    checkpoint = None
    model_dir = Path(cfg.model.path).expanduser() if (b.load and cfg.model.path) else None
    if b.load and model_dir is None:
        checkpoint = BenchCheckpoint(hf_config, b.checkpoint_dir, device, dtype, dims.world_group,
                                     b.checkpoint_format == "fp8")
        model_dir = checkpoint.path

    engine = Engine.start(hf_config, model_dir, dims, device, dtype, max_model_len, cfg)
    st = engine.startup
    startup = {"process_to_main_s": launched, "distributed_init_s": init_s, "build_s": st.build, "load_s": st.load,
               "warmup_s": st.warmup, "kv_cache_s": st.kv_cache, "graph_capture_s": st.graphs,
               "launch_to_first_step_s": (launched or 0.0) + init_s + st.total,
               "checkpoint_write_s": checkpoint.seconds if checkpoint else None}
    if checkpoint is not None:
        checkpoint.remove()
    cost = ModelCost.from_model(engine.runner.model, engine.runner.kv_bytes_per_token)
    sampling = SamplingParams.from_config(cfg.sampling)
    mlp_spans_dp = dims.dp_attention and dims.dp > 1
    for case in warm:
        run_case(engine, case, sampling, b.seed)
    results, flipped_rows = [], []
    configured = bool(cfg.runtime.overlap_prefill)
    for case in cases:
        compiled = compiled_variants()
        runs, flipped_runs = [], []
        for r in range(b.repeats):
            for flipped in (False, True) if b.overlap_prefill_ab else (False,):
                seed = b.seed + r + (b.repeats if flipped else 0)
                allocated = allocator_counts(device)
                with FullCollections() as full_gc:
                    records, source, wall = run_case(engine, case, sampling, seed,
                                                     overlap_prefill=configured != flipped)
                metrics = case_metrics(case, records, source, wall, cost, ceilings, mlp_spans_dp,
                                       source.scheduler.num_preemptions)
                metrics["gc_full"] = {"collections": full_gc.count, "seconds": full_gc.seconds}
                metrics["allocator"] = allocator_delta(allocated, allocator_counts(device))
                (flipped_runs if flipped else runs).append(metrics)
                log.info("%s%s: %.0f output tok/s, %.2f s", case.name, " (overlap_prefill flipped)" if flipped else "",
                         metrics["output_tok_s"], wall)
        results.append(median_run(runs))
        flipped_rows.append(_flipped_row(case.name, flipped_runs, not configured) if flipped_runs else None)
        # A kernel variant first met inside a timed case compiles there (~0.1-1 s each): say so, and which.
        new = dict(compiled_variants() - compiled)
        results[-1]["triton_compiles"] = new
        if new:
            log.warning("%s: %d Triton kernel variants compiled during the timed case (its time includes them): %s",
                        case.name, sum(new.values()), ", ".join(f"{k} x{v}" for k, v in sorted(new.items())))
    profiled = None
    if b.profile:
        case = cases[-1]
        # Prompt tokens no timed run drew: a prompt of an earlier run may still sit in the prefix cache, and a cached
        # prefill profiles nothing.
        fresh_seed = b.seed + 2 * b.repeats
        profiled = {"case": case.name, b.profile_phase: profile_case(
            partial(run_case, engine, case, sampling, fresh_seed), device, b.profile_top, b.profile_phase)}
    num_blocks = engine.num_blocks
    engine_fp8_experts = engine.runner.sharding.fp8_expert_block is not None  # as model.expert_dtype resolved
    # Linear layers in float8, as model.linear_dtype resolved.
    engine_fp8_linears = fp8_linear_counts(engine.runner.model)[0]
    prefill_graph_tokens = engine.runner.prefill_graph_tokens  # the largest prefill step a CUDA graph replays
    thaw()  # the engine's reference cycles, frozen at its start, must be reachable for its memory to come back
    del engine
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()

    skipped = None
    if b.baseline == "hf":
        if dist.get_world_size() > 1:
            skipped = "the transformers baseline runs on one GPU: launch without torchrun (parallel.dp=1 tp=1)"
            log.warning("bench.baseline=hf skipped: %s", skipped)
        else:
            _run_baseline(hf_config, cases, results, device, dtype, b)
    # bench.overlap_prefill_ab: each case's flipped runs right after it (the baseline compared the configured ones).
    results = [row for pair in zip(results, flipped_rows) for row in pair if row is not None]
    report = {
        "model": {"name": name, "architecture": hf_config.architectures[0], "dtype": str(dtype).removeprefix("torch."),
                  "expert_dtype": cfg.model.expert_dtype, "fp8_experts": engine_fp8_experts,
                  "linear_dtype": cfg.model.linear_dtype, "fp8_linears": engine_fp8_linears,
                  "checkpoint_format": b.checkpoint_format if b.load and not cfg.model.path else None,
                  "random_weights": not (b.load and cfg.model.path),
                  "cost": cost.to_json()},
        "layout": {"dp": dims.dp, "tp": dims.tp, "dp_attention": dims.dp_attention, "moe": cfg.parallel.moe,
                   "world_size": dist.get_world_size(), "all_reduce": all_reduce_path(dims.tp_group, dims.tp),
                   "dp_exchange": dp_exchange_path(dims.dp_group, dims.dp_attention and dims.dp > 1)},
        "ceilings": ceilings.to_json(), "startup": startup,
        "kv_cache": {"num_blocks": num_blocks, "block_size": cfg.cache.block_size, "dtype": cfg.cache.dtype,
                     "tokens_per_dp_group": num_blocks * cfg.cache.block_size},
        "engine": {"max_num_seqs": cfg.scheduler.max_num_seqs,
                   "max_num_batched_tokens": cfg.scheduler.max_num_batched_tokens, "max_model_len": max_model_len,
                   "temperature": sampling.temperature, "overlap_steps": cfg.runtime.overlap_steps,
                   "overlap_prefill": cfg.runtime.overlap_prefill,
                   # The largest prefill step a CUDA graph replays (engine/prefill_graphs.py); 0: every one eager.
                   "prefill_graph_tokens": prefill_graph_tokens},
        "cases": results, "baseline_skipped": skipped, "profile": profiled,
        "bench_seconds": time.perf_counter() - entered, "torch": torch.__version__,
    }
    dist.barrier(group=dims.world_group)
    if not rank0:
        return None
    path = write_json(report, b.output)
    profiled_lines = profile_lines(profiled["case"], profiled[b.profile_phase]) if profiled else []
    for line in console_lines(report) + profiled_lines:
        print(line)
    print(f"results: {path}")
    return report


def _flipped_row(name: str, runs: list[dict], overlap_prefill: bool) -> dict:
    """bench.overlap_prefill_ab: the median of a case's runs with runtime.overlap_prefill flipped, as a row."""
    return dict(median_run(runs), name=f"{name} [overlap_prefill={'on' if overlap_prefill else 'off'}]",
                overlap_prefill=overlap_prefill)


def _run_baseline(hf_config: Any, cases: list, results: list[dict], device: torch.device, dtype: torch.dtype,
                  b: Any) -> None:
    started = time.perf_counter()
    hf = HFBaseline(hf_config, device, dtype, b.hf_batch_size, b.hf_cache_implementation)
    for case, result in zip(cases, results):
        # Only mixed lengths are batched in an order; the first order's run is the headline.
        for order in b.hf_orders if not case.uniform else b.hf_orders[:1]:
            hf_result = hf.run(case, b.seed, order)
            ratios = compare(result, hf_result)
            if "hf" not in result:
                result["hf"], result["vs_hf"] = hf_result, ratios
            if not case.uniform:
                result.setdefault("hf_by_order", {})[order] = {**hf_result, "vs_engine": ratios}
            log.info("%s: transformers %.0f output tok/s%s (engine %.2fx)", case.name, hf_result["output_tok_s"],
                     "" if case.uniform else f" ({order} order)", ratios["output_tok_s"])
    hf.close()
    log.info("transformers baseline took %.1f s", time.perf_counter() - started)


def _process_age() -> Optional[float]:
    """Seconds since this process started (Linux /proc), so startup includes interpreter and imports."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, counted after "pid (comm)"
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None
