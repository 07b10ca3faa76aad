"""Runs several jobs in one torchrun launch (process start-up dominates CPU test time), as the CLI would.

usage: torchrun --nproc-per-node N tests/support/multi_job.py SPEC.json
SPEC.json: [{"name": ..., "overrides": ["model.path=...", ...], "switches": {"module.ATTR": value}}, ...]
(switches, optional: module attributes set for that job alone, the kernel switches a process reads once at import);
each rank writes its summaries to SPEC.json.rank{R}.json. SPMD_TEST_OVERRIDES="key=value ..." adds overrides to every
job (e.g. model.dtype=float32, with SPMD_TEST_GPU=1, to run a CPU test's jobs on a GPU against its float32 references:
tests/gpu/run_sampling_gpu.sh).
"""

import contextlib
import dataclasses
import importlib
import json
import logging
import os
import sys

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


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    spec_path = sys.argv[1]
    with open(spec_path) as f:
        jobs = json.load(f)
    register_configs()
    extra = os.environ.get("SPMD_TEST_OVERRIDES", "").split()
    results = {}
    with initialize_config_module(config_module="spmd_infer_configs", version_base="1.3"):
        for job in jobs:
            cfg = compose(config_name="config", overrides=job["overrides"] + ["runtime.progress=false", *extra])
            with switched(job.get("switches", {})):
                results[job["name"]] = dataclasses.asdict(run_job(cfg))
    with open(f"{spec_path}.rank{os.environ.get('RANK', '0')}.json", "w") as f:
        json.dump(results, f)
    end_process()  # as the CLI leaves: no process-group teardown to race the other ranks


if __name__ == "__main__":
    main()
