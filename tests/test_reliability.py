"""Jobs that never hang, never lose or duplicate a row, and resume where they stopped (multi-rank, torchrun).

- a no-hang matrix: edge-case inputs in every layout and both DP modes, each launch under a timeout;
- kill -9 of the whole job and SIGTERM (to torchrun, or to one TP rank only), then reruns that resume,
  until the output equals transformers' greedy output with every id exactly once;
- one rank raising at step k: every rank exits non-zero within 60 s, the job names that rank once.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support.launch import launch_env, run_jobs, torchrun_cmd
from support.tiny_models import build_model, greedy_reference, read_output

# SPMD_TEST_LAYOUTS=8x1,4x2 runs the matrix at other world sizes (tests/gpu/run_8gpu.sh, on 8 GPUs).
LAYOUTS = [tuple(map(int, x.split("x"))) for x in os.environ.get("SPMD_TEST_LAYOUTS", "2x2,4x1,1x4,2x1").split(",")]
LONG_MAX = 20  # max_tokens of the one slow request in "skew"


def _rows(prompts, sampling=None) -> list[dict]:
    rows = [{"id": f"r{i}", "prompt_token_ids": p} for i, p in enumerate(prompts)]
    for row, s in zip(rows, sampling or []):
        if s:
            row["sampling"] = s
    return rows


def _write(path: Path, rows: list) -> Path:
    path.write_bytes(b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def cases(tiny, tmp_path_factory):
    """{name: (input path, expected token ids per row (None: an error row))}, references from transformers."""
    root = tmp_path_factory.mktemp("nohang")
    rng = random.Random(5)
    short = [[rng.randrange(2, 301) for _ in range(10)] for _ in range(7)]
    long_prompt = [rng.randrange(2, 301) for _ in range(200)]  # 20x the others: one DP rank gets only this
    skew = [[rng.randrange(2, 301) for _ in range(8)] for _ in range(8)]
    model = tiny["models"]["llama"]
    ref_short = greedy_reference(model, short, 6)
    ref_long = greedy_reference(model, [long_prompt], 6)
    ref_skew = greedy_reference(model, skew, LONG_MAX)
    bad = [b'{"id": "b0", "prompt_token_ids": [5, 99999]}', b'{"id": "b1", "prompt_token_ids": []}', b'{"id": "b2"',
           b'\xff\xfe not utf-8', b'{"id": "b4", "prompt": "no tokenizer"}', b'{"id": "b5", "prompt_token_ids": [3],'
           b' "sampling": {"temperature": -1}}', b'{"id": "b6", "prompt_token_ids": [' + b"3, " * 300 + b'3]}']
    cases = {
        "empty": (_write(root / "empty.jsonl", []), []),
        "one": (_write(root / "one.jsonl", _rows(short[:1])), ref_short[:1]),
        "long": (_write(root / "long.jsonl", _rows([long_prompt] + short)), ref_long + ref_short),
        # Every request but the first stops after 1 token: all DP ranks but one finish long before it.
        "skew": (_write(root / "skew.jsonl", _rows(skew, [{"max_tokens": LONG_MAX}] + [{"max_tokens": 1}] * 7)),
                 [ref_skew[0]] + [r[:1] for r in ref_skew[1:]]),
        "invalid": (_write(root / "invalid.jsonl", bad), [None] * len(bad)),
        # Every other row invalid: with round-robin-like assignment, one DP rank's share would be all errors.
        "alternate": (_write(root / "alternate.jsonl", [x for pair in zip(_rows(short[:6]), bad) for x in pair]),
                      [x for pair in zip(ref_short[:6], [None] * 6) for x in pair]),
    }
    # The same edge cases on an MoE model (experts over every rank with DP attention).
    moe = build_model("qwen3moe", root / "qwen3moe")
    moe_short, moe_long, moe_skew = (greedy_reference(moe, p, n) for p, n in
                                     ((short, 6), ([long_prompt], 6), (skew, LONG_MAX)))
    cases["moe"] = {
        "one": (cases["one"][0], moe_short[:1]),
        "long": (cases["long"][0], moe_long + moe_short),
        "skew": (cases["skew"][0], [moe_skew[0]] + [r[:1] for r in moe_skew[1:]]),
        "invalid": cases["invalid"],
        "model": moe,
    }
    return cases


@pytest.mark.parametrize("dp,tp", LAYOUTS, ids=[f"dp{d}xtp{t}" for d, t in LAYOUTS])
def test_no_hang_matrix(tiny, cases, tmp_path, dp, tp):
    jobs, expected_rows = [], {}
    moe = cases["moe"]
    # With one DP rank, DP attention is plain TP (job_plan): the dense model runs that mode once.
    modes = ("false", "true") if dp > 1 else ("false",)
    runs = [("llama", tiny["models"]["llama"], dp_attention, name, *case)
            for dp_attention in modes for name, case in cases.items() if name != "moe"]
    runs += [("moe", moe["model"], "true", name, *case) for name, case in moe.items() if name != "model"]
    for model_name, model, dp_attention, name, path, want in runs:
        job_name = f"{model_name}-{name}-{dp_attention}"
        expected_rows[job_name] = want
        jobs.append({"name": job_name, "overrides": [
            f"model.path={model}", f"data.input={path}",
            f"data.output={tmp_path / job_name}.jsonl", f"parallel.dp={dp}", f"parallel.tp={tp}",
            f"parallel.dp_attention={dp_attention}", "sampling.temperature=0", "sampling.max_tokens=6",
            "model.max_model_len=256", "scheduler.max_num_batched_tokens=64", "scheduler.max_num_seqs=4"]})
    run_jobs(dp * tp, jobs, tmp_path / "spec.json", timeout=400)
    for job in jobs:
        rows = read_output(tmp_path / f"{job['name']}.jsonl")
        expected = expected_rows[job["name"]]
        assert len(rows) == len(expected), job["name"]
        for row, want in zip(rows, expected):
            if want is None:
                assert "error" in row, (job["name"], row)
            else:
                assert row.get("token_ids") == want, (job["name"], row)


# ---- kill -9, SIGTERM and resume ---------------------------------------------------------------------

NUM_ROWS, MAX_TOKENS = 96, 12


def _launch(nproc: int, args: list[str], cwd: Path, log: Path, env: dict | None = None) -> subprocess.Popen:
    """torchrun in a session of its own, so that the whole job (agent and workers) can be killed at once."""
    return subprocess.Popen(torchrun_cmd(nproc, ["-m", "spmd_infer", *args]), cwd=cwd, env=launch_env(nproc, env),
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def _kill_job(proc: subprocess.Popen) -> None:
    """kill -9 of torchrun and all its workers at once (torchrun starts each worker in a session of its own,
    as the process group of a batch scheduler's job step would not be)."""
    workers = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == proc.pid:
            workers.append(int(entry))
    for pgid in [proc.pid, *workers]:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(30)


def _rows_saved(shards: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in shards.glob("*.jsonl")) if shards.is_dir() else 0


def _wait_rows(proc: subprocess.Popen, shards: Path, at_least: int, log: Path, timeout: float = 240) -> None:
    """Until `at_least` rows are saved in all, and this run saved some (it is in its step loop)."""
    at_least = max(at_least, _rows_saved(shards) + 3)
    deadline = time.monotonic() + timeout
    while _rows_saved(shards) < at_least:
        assert proc.poll() is None, f"the job ended before {at_least} rows were saved:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {at_least} rows within {timeout} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.02)


def _finish(proc: subprocess.Popen, log: Path, timeout: float = 120) -> tuple[int, str]:
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _kill_job(proc)
        raise AssertionError(f"the job did not exit within {timeout} s:\n{log.read_text()[-3000:]}")
    return rc, log.read_text()


def test_kill_and_sigterm_then_resume_equals_an_uninterrupted_run(tiny, tmp_path):
    rng = random.Random(17)
    prompts = [[rng.randrange(2, 301) for _ in range(rng.randrange(4, 20))] for _ in range(NUM_ROWS)]
    inp = _write(tmp_path / "in.jsonl", _rows(prompts))
    out, shards = tmp_path / "out.jsonl", tmp_path / "out.jsonl.shards"
    args = [f"model.path={tiny['models']['llama']}", f"data.input={inp}", f"data.output={out}",
            "sampling.temperature=0", f"sampling.max_tokens={MAX_TOKENS}", "scheduler.max_num_seqs=1",
            "scheduler.max_num_batched_tokens=64", "runtime.progress=false"]
    dp2, tp2 = ["parallel.dp=2", "parallel.tp=1"], ["parallel.dp=1", "parallel.tp=2"]
    points = sorted(rng.sample(range(8, 60), 3))  # rows saved before each interruption (seeded "random")

    # 1. SIGTERM reaches one TP rank only (the hook signals rank 1 itself): both ranks still stop together.
    log = tmp_path / "run1.log"
    rc, text = _finish(_launch(2, args + tp2, tmp_path, log, {"SPMD_INFER_TESTING": "1",
                                                               "SPMD_INFER_TEST_FAULT": "1:30:sigterm"}), log)
    assert rc != 0 and "stopped by SIGTERM after step 32" in text and "rerun the same command to resume" in text, \
        text[-3000:]
    assert not out.exists()
    # 2-3. kill -9 of torchrun and every worker, at two points.
    for run, point in enumerate(points[:2], start=2):
        log = tmp_path / f"run{run}.log"
        proc = _launch(2, args + dp2, tmp_path, log)
        _wait_rows(proc, shards, point, log)
        _kill_job(proc)
        assert not out.exists()
    # 4. SIGTERM to torchrun, as Slurm sends it: forwarded to the workers, which finish the step and save.
    log = tmp_path / "run4.log"
    proc = _launch(2, args + dp2, tmp_path, log)
    _wait_rows(proc, shards, points[2], log)
    proc.send_signal(signal.SIGTERM)
    rc, text = _finish(proc, log, timeout=60)
    assert rc != 0 and "stopped by SIGTERM" in text, text[-3000:]
    saved = _rows_saved(shards)
    # 5. The rerun finishes the rest.
    log = tmp_path / "run5.log"
    rc, text = _finish(_launch(2, args + dp2, tmp_path, log), log, timeout=240)
    assert rc == 0, text[-3000:]
    assert re.search(rf"resuming: {saved} of {NUM_ROWS} rows were finished", (out.parent / "out.jsonl.run" /
                                                                             "rank0.log").read_text())
    rows = read_output(out)
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(NUM_ROWS)], "every id exactly once, in input order"
    assert [r["token_ids"] for r in rows] == greedy_reference(tiny["models"]["llama"], prompts, MAX_TOKENS)
    assert not shards.exists()


def test_one_rank_raising_fails_every_rank_quickly_and_names_it(tiny, tmp_path):
    inp = _write(tmp_path / "in.jsonl", _rows([[5 + i, 6, 7, 8] for i in range(24)]))
    log = tmp_path / "run.log"
    out = tmp_path / "o.jsonl"
    proc = _launch(4, [f"model.path={tiny['models']['llama']}", f"data.input={inp}", f"data.output={out}",
                       "parallel.dp=2", "parallel.tp=2", "sampling.max_tokens=8", "scheduler.max_num_seqs=2",
                       "scheduler.max_num_batched_tokens=64"],
                   tmp_path, log, {"SPMD_INFER_TESTING": "1", "SPMD_INFER_TEST_FAULT": "1:3"})
    rank_log = tmp_path / "o.jsonl.run" / "rank1.log"
    deadline = time.monotonic() + 300
    while not (rank_log.is_file() and "rank 1 failed" in rank_log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    failed_at = time.monotonic()
    rc, text = _finish(proc, log, timeout=90)
    assert time.monotonic() - failed_at < 60, "every rank must exit within 60 s of the failure"
    assert rc != 0
    assert text.count("rank 1 failed: RuntimeError: injected fault") == 1, text[-4000:]
    assert "Timed out" not in text and "timed out" not in text
    codes = [int(c) for c in re.findall(r"^\s+exitcode\s*:\s*(-?\d+)", text, re.M)]
    assert len(codes) == 4 and all(c != 0 for c in codes), text[-4000:]
    root = text.split("Root Cause")[1]
    assert re.search(r"rank\s*:\s*1 \(local_rank: 1\)", root), root
