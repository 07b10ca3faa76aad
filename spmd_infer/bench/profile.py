"""Optional torch.profiler pass over one case's decode steps: kernel time against wall time, heaviest kernels.

A decode step slower than its bytes allow is either GPU-bound (the kernels themselves: see which dominate)
or host-bound (the GPU waits between kernels: kernel time well below wall time). This tells the two apart.
Profiling starts after the first step in which no DP rank prefills, so prefill kernels stay out of it.

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


class DecodeProfiler:
    """`on_step` for run_case: profiles from the first all-decode step to the end of the case."""

    def __init__(self, device: torch.device):
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        self.prof = profile(activities=activities)
        self.device = device
        self.started: Optional[float] = None
        self.steps = 0

    def on_step(self, rec: StepRecord) -> None:
        decode_only = Phase.DECODE in rec.dp_phases and Phase.PREFILL not in rec.dp_phases
        if self.started is not None:
            self.steps += 1
        elif decode_only:
            _sync(self.device)
            self.prof.start()
            self.started = time.perf_counter()

    def finish(self, top: int) -> Optional[dict]:
        if self.started is None:
            return None  # the case never reached a pure decode step
        _sync(self.device)
        wall = time.perf_counter() - self.started
        self.prof.stop()
        rows = []
        for evt in self.prof.key_averages():
            if evt.device_type != DeviceType.CUDA:
                continue  # CPU ops also carry their kernels' device time: count kernels once
            seconds = getattr(evt, "self_device_time_total", 0.0) / 1e6
            if seconds > 0:
                rows.append((evt.key, evt.count, seconds))
        rows.sort(key=lambda r: -r[2])
        busy = sum(r[2] for r in rows)
        steps = max(self.steps, 1)
        return {"decode_steps": self.steps, "wall_s": wall, "step_s": wall / steps, "kernel_s": busy,
                "kernel_share_of_wall": busy / max(wall, 1e-12), "pdl": pdl_enabled(self.device),
                "top": [{"name": n, "calls_per_step": c / steps, "seconds_per_step": s / steps,
                         "share_of_kernels": s / max(busy, 1e-12)} for n, c, s in rows[:top]]}


def profile_case(run: Callable[[Callable[[StepRecord], None]], object], device: torch.device,
                 top: int) -> Optional[dict]:
    """`run(on_step)` runs the case; returns the decode profile (None if the case had no pure decode step)."""
    profiler = DecodeProfiler(device)
    run(profiler.on_step)
    return profiler.finish(top)


def profile_lines(name: str, prof: Optional[dict]) -> list[str]:
    if prof is None:
        return [f"profile of {name}: no step without prefill, nothing profiled"]
    rest = ("kernels overlap under programmatic dependent launch and their times include their waits on the one "
            "before: SPMD_PDL=0 for per-kernel attribution" if prof.get("pdl")
            else "the rest is the GPU waiting on the host")
    lines = [f"profile of {name}, {prof['decode_steps']} decode steps: {prof['step_s'] * 1e3:.2f} ms/step wall, "
             f"kernels {prof['kernel_s'] / max(prof['decode_steps'], 1) * 1e3:.2f} ms/step "
             f"({100 * prof['kernel_share_of_wall']:.1f}% of wall; {rest})"]
    for row in prof["top"]:
        lines.append(f"  {100 * row['share_of_kernels']:5.1f}%  {row['seconds_per_step'] * 1e6:8.1f} us/step  "
                     f"{row['calls_per_step']:6.1f}x  {row['name'][:90]}")
    return lines
