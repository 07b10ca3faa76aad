"""Shared pieces of the kernel sweeps (tune_*.py): one setting timed in a CUDA graph, and the ranking of settings by
the geometric mean of their time ratios to the default's over all shapes, so that no single large shape decides."""

from __future__ import annotations

import math
from typing import Callable, Hashable

import torch
import triton.testing


def graph_replay_us(fn: Callable[[int], object], calls: int, copies: int = 1) -> float:
    """Microseconds a call of fn(i), i cycling over `copies` (copies of the data, so that a call does not find the
    one before it in L2), from a CUDA graph of `calls` calls replayed ten times, after warm calls and one replay."""
    for i in range(max(copies, 3)):
        fn(i % copies)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(calls):
            fn(i % copies)
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / (calls * 10)


def time_in_graph(label: str, fn: Callable[[], object], error: Callable[[], float]) -> tuple[float, float]:
    """(ms per call of fn replayed in a CUDA graph, error() after one eager call); (inf, nan) where the setting
    cannot run (out of shared memory or registers): not a candidate."""
    try:
        fn()
        err = error()
        return triton.testing.do_bench_cudagraph(fn, rep=30), err
    except Exception as e:
        print(f"  {label} failed: {type(e).__name__}: {str(e)[:100]}")
        return math.inf, math.nan


def print_best_rows(rows: list[tuple], default: Hashable, line: Callable[[tuple], str], top: int = 5) -> None:
    """One shape's `top` fastest rows (time, setting, ...) and the default's, marked: `line` formats a row."""
    for row in sorted(rows)[:top] + [r for r in rows if r[1] == default]:
        print(f"  {line(row)}{' (default)' if row[1] == default else ''}")


def relative_scores(times: dict[Hashable, list[float]], default: Hashable) -> dict[Hashable, float]:
    """Each setting's geometric-mean time ratio to the default over the shapes (inf where it failed on one)."""
    return {s: math.exp(sum(math.log(t / d) for t, d in zip(ts, times[default])) / len(ts))
            for s, ts in times.items()}


def print_ranking(times: dict[Hashable, list[float]], scores: dict[Hashable, float],
                  describe: Callable[[Hashable], str], top: int = 5) -> None:
    """The `top` best settings, each with its score and its time per shape in microseconds."""
    for s in sorted(scores, key=scores.get)[:top]:
        print(f"  {scores[s]:.3f}  {describe(s)}  per shape: " + " ".join(f"{t * 1e3:.0f}" for t in times[s]))


def print_overall_best(times: dict[Hashable, list[float]], default: Hashable, describe: Callable[[Hashable], str],
                       top: int = 5) -> tuple[Hashable, dict[Hashable, float]]:
    """The setting best over all shapes (geometric mean of its time ratios to the default's) and the ranking of the
    `top` best; returns (best setting, every setting's score)."""
    score = relative_scores(times, default)
    best = min(score, key=score.get)
    print(f"\nbest over all shapes: {describe(best)}: {score[best]:.3f} x the default's time (geometric mean)")
    print_ranking(times, score, describe, top=top)
    return best, score
