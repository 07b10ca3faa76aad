"""GPU probe: the host syncs inside the step loop of a benchmark run, by source line.

An overlapped step loop (runtime.overlap_steps, overlap_prefill) keeps the GPU busy only while the host never waits
for it except where it means to (InFlight.tokens: an event wait, which PyTorch's sync debug mode does not flag).
A `.item()`, `.tolist()` or `.cpu()` of a device tensor, or a blocking copy, makes the host wait for all queued GPU
work, and the next step's launches then start from an idle GPU. This runs the benchmark (its own Hydra overrides)
with `torch.cuda.set_sync_debug_mode("warn")` around every step of the timed cases (not the warmup nor graph
capture, which sync by design), and prints, after each case, every flagged sync with its calling line and count.
A copy from pageable host memory syncs too but is not flagged (host_memory.py keeps the step's copies pinned).

usage (on a GPU machine, in the repo root, after `source tests/gpu/device_env.sh`):
  python tests/gpu/find_step_syncs.py bench.preset=qwen3-0.6b bench.workload=nano_vllm bench.num_seqs=64
"""

from __future__ import annotations

import collections
import sys
import traceback
import warnings

import torch

from spmd_infer.bench import __main__ as bench_main
from spmd_infer.bench import run as bench_run
from spmd_infer.engine.step import Stepper

PACKAGE = "/spmd_infer/"
counts: collections.Counter = collections.Counter()
timed = False  # only the benchmark's timed cases, not Engine.start's warmup and capture


def _where() -> str:
    """The innermost line of our own code on the stack (the caller of the syncing torch call)."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if PACKAGE in frame.filename:
            return f"{frame.filename.rsplit(PACKAGE, 1)[1]}:{frame.lineno} {frame.line}"
    return "?"


_step = Stepper.step


def _watched_step(self, source, queue=None):
    if not timed:
        return _step(self, source, queue)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        shown = warnings.showwarning

        def record(message, category, filename, lineno, file=None, line=None):
            if "synchroniz" in str(message):
                counts[_where()] += 1
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            return _step(self, source, queue)
        finally:
            torch.cuda.set_sync_debug_mode("default")
            warnings.showwarning = shown


_run_case = bench_run.run_case


def _watched_case(engine, case, *args, **kwargs):
    global timed
    counts.clear()
    timed = True
    try:
        return _run_case(engine, case, *args, **kwargs)
    finally:
        timed = False
        total = sum(counts.values())
        print(f"SYNCS {case.name}: {total} flagged host syncs in its steps" + (":" if total else ""), flush=True)
        for where, n in counts.most_common():
            print(f"  {n:6d}  {where}", flush=True)


if __name__ == "__main__":
    if not torch.cuda.is_available():
        sys.exit("find_step_syncs.py needs CUDA (sync debug mode watches CUDA streams)")
    Stepper.step = _watched_step
    bench_run.run_case = _watched_case
    bench_main.main()  # Hydra reads the overrides from sys.argv
