"""Shared fixtures: tiny random checkpoints with their transformers references, and a torchrun launcher."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.tiny_models import build_model, greedy_reference, write_prompts  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MAX_NEW = 10
MODELS = ("llama", "llama3", "qwen2", "qwen3")


def _prompts(seed: int, lengths: list[int]) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(2, 301) for _ in range(n)] for n in lengths]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """{model: folder}, prompt sets and greedy references, built once per test session."""
    root = tmp_path_factory.mktemp("tiny")
    sets = {
        "mixed": _prompts(0, [5, 17, 33, 1, 60, 9]),
        "one": _prompts(1, [11]),
        "long": _prompts(2, [7, 200, 12, 5]),
        "preempt": _prompts(3, [9, 14, 6, 12, 10, 8, 13, 11]),
    }
    models = {name: build_model(name, root / name, shards=2 if name == "qwen2" else 1) for name in MODELS}
    refs = {(m, "mixed"): greedy_reference(models[m], sets["mixed"], MAX_NEW) for m in MODELS}
    for s in ("one", "long", "preempt"):
        refs[("llama", s)] = greedy_reference(models["llama"], sets[s], MAX_NEW)
    inputs = {s: write_prompts(root / f"{s}.jsonl", p) for s, p in sets.items()}
    return {"root": root, "models": models, "sets": sets, "refs": refs, "inputs": inputs}


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
