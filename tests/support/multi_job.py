"""Runs several jobs in one torchrun launch (process start-up dominates CPU test time), as the CLI would.

usage: torchrun --nproc-per-node N tests/support/multi_job.py SPEC.json
SPEC.json: [{"name": ..., "overrides": ["model.path=...", ...], "switches": {"module.ATTR": value}}, ...]
(switches, optional: module attributes set for that job alone, the kernel switches a process reads once at import);
each rank writes its summaries to SPEC.json.rank{R}.json. SPMD_TEST_OVERRIDES="key=value ..." adds overrides to every
job (e.g. model.dtype=float32, with SPMD_TEST_GPU=1, to run a CPU test's jobs on a GPU against its float32 references:
tests/gpu/run_sampling_gpu.sh).
Rank 0 composes every job's config (Hydra takes ~0.5 s a job here) and hands them to the other ranks in a file: four
ranks composing 30 jobs each on CI's two cores took ~30 s of a layout's launch.
Only the first job of a launch freezes its startup heap (runtime.freeze_gc, the CLI's default), unless a job sets
runtime.freeze_gc itself: a process running job after job thaws each job's heap at its end and collects it all at the
next job's start, ~0.3 s a rank a job on CI's cores (a 31-job launch of two ranks 38.7 -> 28.5 s without; its step
loops ran no full collection either way). The CLI runs one job a process.
"""

import contextlib
import dataclasses
import importlib
import json
import logging
import os
import pickle
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_module

from spmd_infer.config import register_configs
from spmd_infer.job import end_process, run_job


@contextlib.contextmanager
def switched(switches: dict):
    """Module attributes ("package.module.ATTR": value) set while a job runs, then restored."""
    saved = []
    try:
        for name, value in switches.items():
            module_name, attr = name.rsplit(".", 1)
            module = importlib.import_module(module_name)
            saved.append((module, attr, getattr(module, attr)))  # (an unknown name fails here, not silently)
            setattr(module, attr, value)
        yield
    finally:
        for module, attr, value in reversed(saved):
            setattr(module, attr, value)


def _freeze_gc_default(overrides: list[str], first: bool) -> list[str]:
    """runtime.freeze_gc=false for every job of a launch but its first, where the job does not set it (see the
    module docstring)."""
    if first or any(o.startswith("runtime.freeze_gc=") for o in overrides):
        return []
    return ["runtime.freeze_gc=false"]


def composed_configs(jobs: list[dict], spec_path: str, rank: int, timeout_s: float = 300.0) -> list:
    """Every job's config as the CLI composes it (Hydra, with SPMD_TEST_OVERRIDES), composed by rank 0 and read by
    the others from SPEC.json.configs (the same files and overrides give every rank the same configs)."""
    shared = Path(f"{spec_path}.configs")
    if rank == 0:
        register_configs()
        extra = os.environ.get("SPMD_TEST_OVERRIDES", "").split()
        with initialize_config_module(config_module="spmd_infer_configs", version_base="1.3"):
            configs = [compose(config_name="config", overrides=job["overrides"] + ["runtime.progress=false", *extra]
                               + _freeze_gc_default(job["overrides"], first=k == 0))
                       for k, job in enumerate(jobs)]
        partial = shared.with_suffix(".partial")
        partial.write_bytes(pickle.dumps(configs))
        partial.replace(shared)  # whole or absent, never half written
        return configs
    deadline = time.monotonic() + timeout_s
    while not shared.exists():  # torchrun stops every rank if rank 0 fails first
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank 0 did not write {shared} within {timeout_s:.0f} s")
        time.sleep(0.05)
    return pickle.loads(shared.read_bytes())


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    spec_path = sys.argv[1]
    with open(spec_path) as f:
        jobs = json.load(f)
    rank = int(os.environ.get("RANK", "0"))
    results = {}
    for job, cfg in zip(jobs, composed_configs(jobs, spec_path, rank)):
        with switched(job.get("switches", {})):
            results[job["name"]] = dataclasses.asdict(run_job(cfg))
    with open(f"{spec_path}.rank{rank}.json", "w") as f:
        json.dump(results, f)
    end_process()  # as the CLI leaves: no process-group teardown to race the other ranks


if __name__ == "__main__":
    main()
