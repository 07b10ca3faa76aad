"""Launch helpers for tests: torchrun as a user runs it, and many jobs in one launch, each with a timeout."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
# The suite's jobs run where CI runs them, on the CPU, where its oracle holds exactly (transformers in float32 on the
# CPU, DESIGN.md). On a GPU host a job would default to CUDA in bf16, where it does not, and a dozen xdist workers
# would each size a KV cache from the same GPU's free memory. A test of the GPU path opts in (gpus=True, GPU_JOB);
# SPMD_TEST_GPU=1 runs every job on the GPU (with SPMD_TEST_OVERRIDES=model.dtype=float32 the float32 references
# hold there too: tests/gpu/run_sampling_gpu.sh).
JOBS_ON_GPU = os.environ.get("SPMD_TEST_GPU") == "1"
STORE_TIMEOUT = datetime.timedelta(seconds=120)
GPU_JOB = "runtime.device=cuda"  # an in-process job's override for a test of the GPU path
CPU_JOB = "runtime.device=cpu"


def torchrun(nproc: int, args: list[str], timeout: float = 300, cwd: Path | None = None,
             env: dict | None = None, gpus: bool = False) -> subprocess.CompletedProcess:
    """Launch through torchrun as a user would; a hang fails by timeout instead of stalling CI."""
    return subprocess.run(torchrun_cmd(nproc, args), capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=launch_env(nproc, env, gpus))


def torchrun_cmd(nproc: int, args: list[str]) -> list[str]:
    # --standalone: the rendezvous store binds a free port itself. A port picked here and passed as --master-port
    # could be taken by a parallel test's launch before torchrun binds it (EADDRINUSE, seen under xdist on a GPU host).
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), *args]


def launch_env(nproc: int = 1, env: dict | None = None, gpus: bool = False) -> dict:
    """The environment of a test's launch of `nproc` ranks (torchrun, the CLI, a launch script): on the CPU, GPUs
    hidden and Triton's interpreter on, as in CI (JOBS_ON_GPU says why), unless the test is of the GPU path (gpus)
    or SPMD_TEST_GPU=1. More ranks than the host has GPUs run on the CPU either way: they would share GPUs, which the
    job refuses (parallel/dims.py)."""
    on_gpu = (gpus or JOBS_ON_GPU) and nproc <= torch.cuda.device_count()
    hide = {} if on_gpu else {"CUDA_VISIBLE_DEVICES": "", "TRITON_INTERPRET": "1"}
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **hide, **(env or {})}


def run_jobs(nproc: int, jobs: list[dict], spec_path: Path, timeout: float = 420, gpus: bool = False) -> dict:
    spec_path.write_text(json.dumps(jobs))
    Path(f"{spec_path}.configs").unlink(missing_ok=True)  # multi_job's composed configs of an earlier launch
    proc = torchrun(nproc, [str(REPO / "tests" / "support" / "multi_job.py"), str(spec_path)], timeout=timeout,
                    gpus=gpus)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-6000:]
    return {r: json.loads(Path(f"{spec_path}.rank{r}.json").read_text()) for r in range(nproc)}


def store_server() -> "torch.distributed.TCPStore":
    """The rendezvous store of processes a test spawns itself, bound to a free port at once: a port picked free and
    bound later by a child could be taken by a parallel test's launch first. The test holds it while its children,
    joining as clients (init_gloo_client), run."""
    import torch.distributed as dist

    return dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=STORE_TIMEOUT)


def init_gloo_client(port: int, rank: int, world_size: int) -> None:
    """In a child of the test: the default gloo group over the test's store_server()."""
    import torch.distributed as dist

    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=STORE_TIMEOUT)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
