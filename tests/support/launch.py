"""Launch helpers for tests: torchrun as a user runs it, and many jobs in one launch, each with a timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def torchrun(nproc: int, args: list[str], timeout: float = 300, cwd: Path | None = None,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """Launch through torchrun as a user would; a hang fails by timeout instead of stalling CI."""
    return subprocess.run(torchrun_cmd(nproc, args), capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=launch_env(nproc, env))


def torchrun_cmd(nproc: int, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
            "--master-port", str(_free_port()), *args]


def launch_env(nproc: int, env: dict | None = None) -> dict:
    """The environment of a test's torchrun launch of `nproc` ranks. More ranks than the host has GPUs run on the CPU
    (GPUs hidden, Triton's interpreter on), as in CI: on a GPU host they would share GPUs, which the job refuses
    (parallel/dims.py)."""
    hide = {"CUDA_VISIBLE_DEVICES": "", "TRITON_INTERPRET": "1"} if nproc > torch.cuda.device_count() else {}
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **hide, **(env or {})}


def run_jobs(nproc: int, jobs: list[dict], spec_path: Path, timeout: float = 420) -> dict:
    spec_path.write_text(json.dumps(jobs))
    proc = torchrun(nproc, [str(REPO / "tests" / "support" / "multi_job.py"), str(spec_path)], timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-6000:]
    return {r: json.loads(Path(f"{spec_path}.rank{r}.json").read_text()) for r in range(nproc)}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
