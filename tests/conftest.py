"""Shared fixtures: tiny random checkpoints with their transformers references, and one-rank in-process jobs."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest
import torch

# Triton reads this when it is first imported, and any test module may import it (through spmd_kernels):
# without CUDA, kernels run in Triton's interpreter (tests/kernels/conftest.py says the same for a lone run).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, str(Path(__file__).parent))

from support.block_fp8 import write_block_fp8_copy  # noqa: E402
from support.launch import CPU_JOB, JOBS_ON_GPU  # noqa: E402
from support.tiny_models import (  # noqa: E402
    FP8_QWEN3, JOB_MAX_TOKENS, MAX_NEW, MODELS, MOE_MODELS, build_model, greedy_reference, write_prompts)


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
        # A 20-token "system prompt" shared by every request: prefix-cache hits in whole 4-token blocks.
        "shared": [_prompts(4, [20])[0] + tail for tail in _prompts(5, [3, 7, 1, 12, 5, 9])],
    }
    models = {name: build_model(name, root / name, shards=2 if name == "qwen2" else 1) for name in MODELS + MOE_MODELS}
    refs = {(m, "mixed"): greedy_reference(models[m], sets["mixed"], MAX_NEW) for m in MODELS + MOE_MODELS}
    for s in ("one", "long", "preempt", "shared"):
        refs[("llama", s)] = greedy_reference(models["llama"], sets[s], MAX_NEW)
    # Qwen3 as a block-float8 release (16 x 16 blocks), and transformers on its dequantized twin: the reference of
    # its linear layers held in float8 (model.linear_dtype=fp8).
    write_block_fp8_copy(models["qwen3"], root / FP8_QWEN3, root / "qwen3-dequantized", (16, 16))
    models[FP8_QWEN3] = root / FP8_QWEN3
    refs[(FP8_QWEN3, "mixed")] = greedy_reference(root / "qwen3-dequantized", sets["mixed"], MAX_NEW)
    inputs = {s: write_prompts(root / f"{s}.jsonl", p) for s, p in sets.items()}
    return {"root": root, "models": models, "sets": sets, "refs": refs, "inputs": inputs}


@pytest.fixture
def job(tiny, tmp_path, monkeypatch):
    """run(*overrides) -> JobSummary of a one-rank job in this process (what every torchrun rank runs), on the
    tiny llama, writing tmp_path/out.jsonl unless overridden; environment and process group restored afterwards.
    On the CPU on any host (support/launch.JOBS_ON_GPU says why), unless a test of the GPU path overrides it
    (GPU_JOB)."""
    from hydra import compose, initialize_config_module

    from spmd_infer.config import register_configs
    from spmd_infer.failure import FAULT_ENV, TESTING_ENV
    from spmd_infer.job import release_distributed, run_job

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", FAULT_ENV, TESTING_ENV):
        monkeypatch.setenv(name, "")  # recorded first, so what init_distributed sets is undone at teardown
        monkeypatch.delenv(name)
    register_configs()
    base = [f"model.path={tiny['models']['llama']}", f"data.output={tmp_path / 'out.jsonl'}",
            "sampling.temperature=0", f"sampling.max_tokens={JOB_MAX_TOKENS}", "scheduler.max_num_seqs=3",
            "scheduler.max_num_batched_tokens=64", "runtime.progress=false", *([] if JOBS_ON_GPU else [CPU_JOB])]

    def run(*overrides: str):
        # A case's own value of a base key replaces it (Hydra takes each key once).
        merged = dict(o.split("=", 1) for o in base + list(overrides))
        with initialize_config_module(config_module="spmd_infer_configs", version_base="1.3"):
            return run_job(compose(config_name="config", overrides=[f"{k}={v}" for k, v in merged.items()]))

    yield run
    release_distributed()
