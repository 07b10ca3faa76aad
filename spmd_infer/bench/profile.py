"""Optional torch.profiler pass over one benchmark case: GPU busy time against wall time, and the top kernels.

A decode step that is slower than its bytes allow is either GPU-bound (the kernels themselves: see which
dominate) or host-bound (gaps between kernels: GPU busy well below wall time). This tells the two apart.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile


def profile_case(run: Callable[[], float], device: torch.device, top: int) -> dict:
    """Run `run()` (returns its wall seconds) under the profiler; the kernels' share and the `top` heaviest."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        wall = run()
    rows = []
    for evt in prof.key_averages():
        dev_us = getattr(evt, "self_device_time_total", None)
        if dev_us is None:
            dev_us = getattr(evt, "self_cuda_time_total", 0.0)
        if dev_us > 0:
            rows.append((evt.key, evt.count, dev_us / 1e6))
    rows.sort(key=lambda r: -r[2])
    busy = sum(r[2] for r in rows)
    return {"wall_s": wall, "device_busy_s": busy, "device_busy_share": busy / max(wall, 1e-12),
            "top": [{"name": n, "calls": c, "seconds": s, "share_of_busy": s / max(busy, 1e-12)}
                    for n, c, s in rows[:top]]}


def profile_lines(name: str, prof: dict) -> list[str]:
    lines = [f"profile of {name}: wall {prof['wall_s'] * 1e3:.1f} ms, kernels {prof['device_busy_s'] * 1e3:.1f} ms "
             f"({100 * prof['device_busy_share']:.1f}% of wall; the rest is host time between kernels)"]
    for row in prof["top"]:
        lines.append(f"  {100 * row['share_of_busy']:5.1f}%  {row['seconds'] * 1e3:8.2f} ms  {row['calls']:6d}x  "
                     f"{row['name'][:90]}")
    return lines
