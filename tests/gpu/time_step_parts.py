"""GPU probe: where a step's host time goes, by part, timed with perf_counter (no profiler's overhead in the way).

`bench.profile_phase=prefill` tells host-bound steps from GPU-bound ones but inflates every host call it records;
cProfile inflates Python far more. This wraps the step's parts (scheduling, the DP exchange, packing and upload,
the forward's launches split into layers, norms, attention, MLP, linear layers and Triton launches, sampling,
postprocessing) in plain timers, sums them over the timed cases' steps by phase and prints milliseconds a step.
Parts nest (a Triton launch inside a norm inside a layer): each row is that part's whole time. One launch's own
cost, split further: bench_launch_path.py.

usage (on a GPU machine, in the repo root, after `source tests/gpu/device_env.sh`):
  python tests/gpu/time_step_parts.py bench.preset=qwen3-0.6b bench.workload=nano_vllm
"""

from __future__ import annotations

import collections
import functools
import sys
import time

import torch
import triton

from spmd_infer.bench import __main__ as bench_main
from spmd_infer.bench import run as bench_run
from spmd_infer.engine import prefill_graphs, sources
from spmd_infer.engine.model_runner import ModelRunner
from spmd_infer.engine.step import Stepper
from spmd_infer.layers import layernorm, linear, mla, moe
from spmd_infer.models import deepseek_v2, llama
from spmd_infer.parallel.dp_meta import DPMetaExchange

seconds: collections.Counter = collections.Counter()
calls: collections.Counter = collections.Counter()
steps: collections.Counter = collections.Counter()
timed = False


def _timer(name: str, fn):
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        if not timed:
            return fn(*args, **kwargs)
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds[name] += time.perf_counter() - start
            calls[name] += 1
    return wrapped


def _wrap(owner, attr: str, name: str) -> None:
    setattr(owner, attr, _timer(name, getattr(owner, attr)))


PARTS = [
    (sources.RequestSource, "schedule", "schedule"),
    (DPMetaExchange, "gather", "dp exchange"),
    (ModelRunner, "prepare", "prepare (pack + upload)"),
    (ModelRunner, "run", "run (forward launches)"),
    (ModelRunner, "sample", "sample"),
    (ModelRunner, "sample_on_device", "sample on device"),
    (sources.RequestSource, "postprocess", "postprocess"),
    (sources.RequestSource, "resolve", "resolve"),
    (llama.LlamaDecoderLayer, "forward", "  layers"),
    (llama.LlamaAttention, "forward", "    attention"),
    (llama.LlamaMLP, "forward", "    mlp"),
    (layernorm.RMSNorm, "forward", "    norms"),
    (triton.runtime.jit.JITFunction, "run", "      triton launches"),
    # Prefill graphs and the MLA / MoE layers (DeepSeek, Qwen3-MoE): the pieces' replays and the eager attention
    # between them.
    (prefill_graphs.PrefillGraphs, "forward", "  prefill graphs forward"),
    (torch.cuda.CUDAGraph, "replay", "    graph replays"),
    (deepseek_v2.DeepseekV2Attention, "forward", "    mla attention (eager layers)"),
    (mla.LatentAttention, "prefill", "    mla prefill attention"),
    (mla, "_plan_groups", "      mla group plans"),
    (mla.LatentAttention, "_expand", "      mla expansions"),
    (mla, "paged_prefill_attention", "      mla prefill kernels"),
    (moe.FusedMoE, "forward", "    moe experts"),
    (moe.SharedExpertsMoE, "forward", "    moe block (routed + shared)"),
    (moe, "route", "      moe routing"),
    (moe, "fused_moe", "      fused_moe"),
]


def _wrap_linears() -> None:
    """Every linear layer class's own forward (subclasses that define one)."""
    seen = set()
    for cls in vars(linear).values():
        if isinstance(cls, type) and issubclass(cls, torch.nn.Module) and "forward" in vars(cls) and cls not in seen:
            seen.add(cls)
            _wrap(cls, "forward", "      linear layers")


_step = Stepper.step


def _timed_step(self, source, queue=None):
    result = _step(self, source, queue)
    if timed:
        steps[result.phase.name.lower()] += 1
        seconds[f"step ({result.phase.name.lower()})"] += result.seconds
    return result


_run_case = bench_run.run_case


def _timed_case(engine, case, *args, **kwargs):
    global timed
    seconds.clear(), calls.clear(), steps.clear()
    timed = True
    try:
        return _run_case(engine, case, *args, **kwargs)
    finally:
        timed = False
        total = sum(steps.values())
        print(f"PARTS {case.name}: {dict(steps)} steps; ms a step over all {total} steps (calls a step):", flush=True)
        for name, secs in sorted(seconds.items(), key=lambda kv: kv[0].startswith(" ")):
            n = calls.get(name)
            print(f"  {name:28s} {secs / max(total, 1) * 1e3:8.2f}" + (f"  ({n / max(total, 1):.1f})" if n else ""),
                  flush=True)


if __name__ == "__main__":
    if not torch.cuda.is_available():
        sys.exit("time_step_parts.py needs CUDA (it times launches)")
    for owner, attr, name in PARTS:
        _wrap(owner, attr, name)
    _wrap_linears()
    Stepper.step = _timed_step
    bench_run.run_case = _timed_case
    bench_main.main()  # Hydra reads the overrides from sys.argv
