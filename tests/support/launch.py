"""Launch helpers for tests: torchrun as a user runs it, and many jobs in one launch, each with a timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def torchrun(nproc: int, args: list[str], timeout: float = 300, cwd: Path | None = None,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """Launch through torchrun as a user would; a hang fails by timeout instead of stalling CI."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--master-port", str(_free_port()), *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=full_env)


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
