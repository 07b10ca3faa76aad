"""Optional torch.profiler pass over one case's decode or prefill steps: kernel time against wall time, heaviest
kernels.

A step slower than its bytes or FLOPs allow is either GPU-bound (the kernels themselves: see which dominate) or
host-bound (the GPU waits between kernels: kernel time well below wall time). This tells the two apart. Decode
profiling starts after the first step in which no DP rank prefills, so prefill kernels stay out of it; prefill
profiling runs from the case's start to that step.

Under programmatic dependent launch (kernels/pdl.py, on by default on Hopper) each kernel starts while the one
before still runs and waits inside itself, so kernel times overlap and include those waits: their sum can exceed
the wall time and per-kernel shares blur. SPMD_PDL=0 gives one kernel at a time for attribution.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from spmd_kernels.pdl import pdl_enabled

from ..parallel.dp_meta import Phase
from .measure import StepRecord, _sync


PHASES = ("decode", "prefill")


class StepProfiler:
    """`on_step` for run_case, profiling one phase's steps: `decode` from the first all-decode step to the end of the
    case; `prefill` from `start()` (called before the case's first step) to the end of its first all-decode step,
    which it leaves out of the step count but not out of the times (the profiler learns that a step was all-decode
    only once it has run: one decode step against the prefill steps of a batch's prompts)."""

    def __init__(self, device: torch.device, phase: str = "decode"):
        assert phase in PHASES, phase  # the benchmark checks bench.profile_phase before it starts
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        self.prof = profile(activities=activities)
        self.device = device
        self.phase = phase
        self.started: Optional[float] = None
        self.wall: Optional[float] = None  # set when profiling stops
        self.steps = 0

    def start(self) -> None:
        _sync(self.device)
        self.prof.start()
        self.started = time.perf_counter()

    def stop(self) -> None:
        _sync(self.device)
        self.wall = time.perf_counter() - self.started
        self.prof.stop()

    def on_step(self, rec: StepRecord) -> None:
        decode_only = Phase.DECODE in rec.dp_phases and Phase.PREFILL not in rec.dp_phases
        if self.started is None:
            if self.phase == "decode" and decode_only:
                self.start()
        elif self.wall is None:
            if self.phase == "prefill" and decode_only:
                self.stop()
            else:
                self.steps += 1

    def finish(self, top: int) -> Optional[dict]:
        if self.started is not None and self.wall is None:
            self.stop()  # decode runs to the case's end; so does a prefill that never reached a decode step
        if not self.steps:
            return None  # no step of the phase
        wall = self.wall
        rows, host_rows = [], []
        for evt in self.prof.key_averages():
            if evt.device_type == DeviceType.CUDA:
                seconds = getattr(evt, "self_device_time_total", 0.0) / 1e6
                if seconds > 0:
                    rows.append((evt.key, evt.count, seconds))
            elif evt.self_cpu_time_total > 0:  # its kernels' device time stays with the CUDA rows: counted once
                host_rows.append((evt.key, evt.count, evt.self_cpu_time_total / 1e6))
        rows.sort(key=lambda r: -r[2])
        host_rows.sort(key=lambda r: -r[2])
        busy = sum(r[2] for r in rows)
        steps = self.steps
        return {"phase": self.phase, "steps": self.steps, "wall_s": wall, "step_s": wall / steps, "kernel_s": busy,
                "kernel_share_of_wall": busy / max(wall, 1e-12), "pdl": pdl_enabled(self.device),
                "top": [{"name": n, "calls_per_step": c / steps, "seconds_per_step": s / steps,
                         "share_of_kernels": s / max(busy, 1e-12)} for n, c, s in rows[:top]],
                # Where the host's time goes (torch ops and CUDA runtime calls, self time: a long
                # cudaStreamSynchronize or item() is the host waiting on the GPU, a long launch list the reverse).
                "host_top": [{"name": n, "calls_per_step": c / steps, "seconds_per_step": s / steps}
                             for n, c, s in host_rows[:top]]}


def profile_case(run: Callable[[Callable[[StepRecord], None]], object], device: torch.device, top: int,
                 phase: str = "decode") -> Optional[dict]:
    """`run(on_step)` runs the case; returns the profile of its `phase` steps (None if it had none)."""
    profiler = StepProfiler(device, phase)
    if phase == "prefill":
        profiler.start()
    run(profiler.on_step)
    return profiler.finish(top)


def profile_lines(name: str, prof: Optional[dict]) -> list[str]:
    if prof is None:
        return [f"profile of {name}: no step of the profiled phase (bench.profile_phase), nothing profiled"]
    rest = ("kernels overlap under programmatic dependent launch and their times include their waits on the one "
            "before: SPMD_PDL=0 for per-kernel attribution" if prof.get("pdl")
            else "the rest is the GPU waiting on the host")
    lines = [f"profile of {name}, {prof['steps']} {prof['phase']} steps: {prof['step_s'] * 1e3:.2f} ms/step wall, "
             f"kernels {prof['kernel_s'] / max(prof['steps'], 1) * 1e3:.2f} ms/step "
             f"({100 * prof['kernel_share_of_wall']:.1f}% of wall; {rest})"]
    for row in prof["top"]:
        lines.append(f"  {100 * row['share_of_kernels']:5.1f}%  {row['seconds_per_step'] * 1e6:8.1f} us/step  "
                     f"{row['calls_per_step']:6.1f}x  {row['name'][:90]}")
    if prof.get("host_top"):
        lines.append("heaviest host calls (self time; the profiler's own overhead inflates short ones):")
        for row in prof["host_top"]:
            lines.append(f"          {row['seconds_per_step'] * 1e6:8.1f} us/step  {row['calls_per_step']:6.1f}x  "
                         f"{row['name'][:90]}")
    return lines
