"""Resume, overwrite, refusal to mix configurations, duplicate ids, OOM and SIGTERM stops: one rank, in-process.

Each job runs through run_job in this process (a world of one, conftest's `job`), which is what every
torchrun rank runs; the multi-rank versions are in test_reliability.py.
"""

from __future__ import annotations

import gc
import json
import random
import signal

import pytest
import torch

from spmd_infer.data.writer import shard_dir_for, shard_files
from spmd_infer.failure import FAULT_ENV, TESTING_ENV, JobStopped
from spmd_infer.parallel.dims import ConfigError
from spmd_infer.resume import manifest_path
from support.tiny_models import JOB_MAX_TOKENS, greedy_reference, read_output, write_prompts

MAX_TOKENS = JOB_MAX_TOKENS  # the `job` fixture's


@pytest.fixture(scope="module")
def prompts(tiny):
    rng = random.Random(11)
    sets = [[rng.randrange(2, 301) for _ in range(rng.randrange(3, 15))] for _ in range(12)]
    return sets, greedy_reference(tiny["models"]["llama"], sets, MAX_TOKENS)


def _input(tmp_path, prompts, name="in.jsonl"):
    return f"data.input={write_prompts(tmp_path / name, prompts[0])}"


def _check(tmp_path, prompts):
    rows = read_output(tmp_path / "out.jsonl")
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(len(prompts[1]))]
    assert [r["token_ids"] for r in rows] == prompts[1]


def test_rerun_of_complete_output_does_nothing_and_changes_are_refused(job, tmp_path, prompts):
    inp = _input(tmp_path, prompts)
    first = job(inp)
    _check(tmp_path, prompts)
    assert not shard_dir_for(tmp_path / "out.jsonl").exists()
    assert json.loads(manifest_path(tmp_path / "out.jsonl").read_text())["complete"]
    before = (tmp_path / "out.jsonl").stat().st_mtime_ns

    again = job(inp)
    assert again.already_complete and again.requests == first.requests == 12
    assert "already complete" in again.lines()[0] and "data.overwrite=true" in again.lines()[0]
    assert (tmp_path / "out.jsonl").stat().st_mtime_ns == before

    with pytest.raises(ConfigError, match=r"sampling.max_tokens: 6 -> 7.*data.overwrite=true"):
        job(inp, "sampling.max_tokens=7")
    with pytest.raises(ConfigError, match=r"cache.dtype"):  # a float8 KV cache rounds keys and values
        job(inp, "cache.dtype=fp8")
    # A changed input file (same path) is refused as well.
    write_prompts(tmp_path / "in.jsonl", prompts[0][:-1])
    with pytest.raises(ConfigError, match="data.input bytes"):
        job(inp)
    summary = job(inp, "data.overwrite=true")
    assert not summary.already_complete and summary.requests == 11
    assert len(read_output(tmp_path / "out.jsonl")) == 11


def test_output_without_manifest_is_not_clobbered(job, tmp_path, prompts):
    (tmp_path / "out.jsonl").write_text('{"someone else": "wrote this"}\n')
    with pytest.raises(ConfigError, match="data.overwrite=true"):
        job(_input(tmp_path, prompts))
    assert "someone else" in (tmp_path / "out.jsonl").read_text()


def test_duplicate_ids_are_refused_before_any_work(job, tmp_path):
    rows = [{"id": "a", "prompt_token_ids": [5]}, {"prompt_token_ids": [6]}, {"id": "b", "prompt_token_ids": [7]},
            {"id": "a", "prompt_token_ids": [8]}, {"id": 2, "prompt_token_ids": [9]}, {"id": "b", "prompt": "x"}]
    (tmp_path / "dup.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ConfigError) as e:
        job(f"data.input={tmp_path / 'dup.jsonl'}")
    # Only explicit ids count: row 2 has no id, so its line number 2 does not clash with "id": 2.
    assert '"a" on lines 1, 4' in str(e.value) and '"b" on lines 3, 6' in str(e.value), str(e.value)
    assert not shard_dir_for(tmp_path / "out.jsonl").exists()


def test_failed_run_resumes_keeping_finished_rows(job, tmp_path, prompts, monkeypatch):
    inp = _input(tmp_path, prompts)
    monkeypatch.setenv(TESTING_ENV, "1")
    monkeypatch.setenv(FAULT_ENV, "0:12")
    with pytest.raises(RuntimeError, match="injected fault"):
        job(inp)
    monkeypatch.delenv(FAULT_ENV)
    (shard,) = shard_files(shard_dir_for(tmp_path / "out.jsonl"))
    lines = shard.read_bytes().splitlines(keepends=True)
    assert 0 < len(lines) < 12, "the fault should strike after some rows and before the last"
    # Mark one finished row, and leave a torn line as a kill mid-write would: the marked row must be kept
    # as it is (not recomputed), the torn one recomputed.
    done = json.loads(lines[0])
    done["row"]["text"] = "kept from the first run"
    torn = json.loads(lines[-1])
    shard.write_bytes(json.dumps(done).encode() + b"\n" + b"".join(lines[1:-1]) + lines[-1][:25])
    summary = job(inp)
    assert summary.resumed == len(lines) - 1
    rows = read_output(tmp_path / "out.jsonl")
    assert rows[done["index"]]["text"] == "kept from the first run"
    assert rows[torn["index"]]["token_ids"] == prompts[1][torn["index"]]
    for r in rows:
        r.pop("text")
    assert [r["token_ids"] for r in rows] == prompts[1] and len({r["id"] for r in rows}) == 12
    assert len(list((tmp_path / "out.jsonl.run").glob("manifest.json"))) == 1


@pytest.mark.parametrize("mode", ["runtime.overlap_steps=false", "runtime.overlap_steps=true",
                                  "runtime.overlap_prefill=false"], ids=["sync", "overlapped", "settled-prefill"])
def test_sigterm_stops_after_a_step_and_rerun_resumes(job, tmp_path, prompts, monkeypatch, mode):
    # Overlapped steps (prefills too, by default): the stop settles the in-flight step first, so what it finished is
    # saved too.
    inp = _input(tmp_path, prompts)
    handler = signal.getsignal(signal.SIGTERM)
    monkeypatch.setenv(TESTING_ENV, "1")
    monkeypatch.setenv(FAULT_ENV, "0:12:sigterm")
    with pytest.raises(JobStopped, match="stopped by SIGTERM after step 12.*rerun the same command") as e:
        job(inp, mode)
    assert e.value.exit_code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is handler, "the job must restore the signal handlers"
    monkeypatch.delenv(FAULT_ENV)
    assert job(inp, mode).resumed > 0
    _check(tmp_path, prompts)


def test_cuda_oom_names_the_settings_to_lower(job, tmp_path, prompts, monkeypatch):
    monkeypatch.setenv(TESTING_ENV, "1")
    monkeypatch.setenv(FAULT_ENV, "0:2:oom")
    with pytest.raises(RuntimeError, match=r"out of GPU memory in step 2") as e:
        job(_input(tmp_path, prompts))
    for setting in ("scheduler.max_num_batched_tokens (now 64)", "scheduler.max_num_seqs (now 3)",
                    "cache.gpu_memory_utilization"):
        assert setting in str(e.value)
    assert isinstance(e.value.__cause__, torch.OutOfMemoryError)
    assert gc.get_freeze_count() == 0  # the failed job's engine, frozen at its start, is the collector's again


def test_fault_hook_needs_the_testing_switch(job, tmp_path, prompts, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "0:1")  # without SPMD_INFER_TESTING=1: ignored
    job(_input(tmp_path, prompts))
    _check(tmp_path, prompts)
