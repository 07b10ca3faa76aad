"""Launching as users do: launch/run.sh on two ranks (run directory, logs, console, progress, report), a Hydra
sweep over two layouts, and the rank variables for ranks that Slurm starts without torchrun."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from spmd_infer.cli import _sweep_under_torchrun
from spmd_infer.parallel.dims import ConfigError, resolve_device
from spmd_infer.slurm_env import first_host, torch_env_from_slurm
from support.launch import REPO, launch_env, torchrun
from support.tiny_models import MAX_NEW, read_output


def test_run_sh_two_ranks_one_run_dir_one_console(tiny, tmp_path):
    env = launch_env(2, {"NGPU": "2", "PYTHON": sys.executable})
    args = [f"model.path={tiny['models']['llama']}", f"data.input={tiny['inputs']['mixed']}", "data.output=out.jsonl",
            "parallel.dp=2", "sampling.temperature=0", f"sampling.max_tokens={MAX_NEW}", "hydra.run.dir=my-run",
            "runtime.progress_interval_s=0"]
    proc = subprocess.run([str(REPO / "launch" / "run.sh"), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Relative paths are the launch directory's: nothing depends on hydra.job.chdir.
    assert [r["token_ids"] for r in read_output(tmp_path / "out.jsonl")] == tiny["refs"][("llama", "mixed")]

    run = tmp_path / "my-run"  # hydra.run.dir honoured, instead of the default out.jsonl.run
    assert not list((tmp_path / "out.jsonl.run").glob("rank*.log"))  # (resume keeps its manifest by the output)
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob(".hydra")] == [run.relative_to(tmp_path) / ".hydra"]
    assert (run / ".hydra" / "config.yaml").is_file() and (run / ".hydra" / "overrides.yaml").is_file()
    assert "[rank1][" in (run / "rank1.log").read_text() and "[rank0][" in (run / "rank0.log").read_text()

    # One console: rank 0's INFO lines, plain progress lines (stdout is no terminal), one summary.
    assert "[rank1]" not in proc.stdout + proc.stderr
    assert proc.stdout.count("[spmd_infer.progress][INFO] progress:") >= 3
    assert proc.stdout.count("spmd-infer finished") == 1 and "DP load" in proc.stdout

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["requests"] == 6 and metrics["layout"]["dp"] == 2
    assert sum(r["requests_finished"] for r in metrics["dp_ranks"]) == 6
    assert metrics["output_tokens"] == sum(len(r) for r in tiny["refs"][("llama", "mixed")])
    assert len(metrics["memory"]["peak_bytes_per_rank"]) == 2
    assert "<svg" in (run / "report.html").read_text()


def test_sweep_over_two_layouts_gives_each_job_its_run_dir_and_output(tiny, tmp_path):
    """A Hydra multirun under one torchrun launch: parallel=dp2 then parallel=tp2 on the same 2 ranks."""
    args = ["-m", "spmd_infer", "-m", "parallel=dp2,tp2", f"model.path={tiny['models']['llama']}",
            f"data.input={tiny['inputs']['mixed']}", "data.output=out.jsonl", "sampling.temperature=0",
            f"sampling.max_tokens={MAX_NEW}", "hydra.sweep.dir=sweep"]
    proc = torchrun(2, args, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for job, (dp, tp) in ((0, (2, 1)), (1, (1, 2))):
        run = tmp_path / "sweep" / str(job)
        assert [r["token_ids"] for r in read_output(run / "out.jsonl")] == tiny["refs"][("llama", "mixed")]
        assert (run / ".hydra" / "config.yaml").is_file() and (run / "rank0.log").is_file()
        layout = json.loads((run / "metrics.json").read_text())["layout"]
        assert (layout["dp"], layout["tp"]) == (dp, tp)
        assert layout["all_reduce"] == ("gloo" if tp > 1 else "none")  # the TP all-reduces' path (CPU: gloo)
        assert layout["dp_exchange"] == "none"  # no DP attention
    assert not (tmp_path / "out.jsonl").exists()


def test_sweep_under_torchrun_needs_a_shared_sweep_dir(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert _sweep_under_torchrun(["spmd-infer", "-m", "sampling.seed=1,2"])
    assert not _sweep_under_torchrun(["spmd-infer", "-m", "sampling.seed=1,2", "hydra.sweep.dir=s"])
    assert not _sweep_under_torchrun(["spmd-infer", "sampling.seed=1"])
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not _sweep_under_torchrun(["spmd-infer", "-m", "sampling.seed=1,2"])


def test_rank_variables_from_a_slurm_step():
    env = {"SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "77",
           "SLURM_STEP_ID": "0", "SLURM_STEP_NODELIST": "gpu[07-10]"}
    assert torch_env_from_slurm(env)
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"]) == ("5", "8", "1")
    assert env["MASTER_ADDR"] in ("gpu07",) or env["MASTER_ADDR"]  # scontrol's answer where it exists
    assert 15000 <= int(env["MASTER_PORT"]) < 35000
    assert not torch_env_from_slurm(env)  # RANK set (torchrun, or already done): left alone
    assert not torch_env_from_slurm({"SLURM_PROCID": "0", "SLURM_NTASKS": "8"})  # the batch script, not a step


@pytest.mark.parametrize("nodes,head", [("gpu[03-05,09],cpu1", "gpu03"), ("node7", "node7"), ("a-b[1,2]", "a-b1")])
def test_first_host_without_scontrol(monkeypatch, nodes, head):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert first_host(nodes) == head


def test_submitit_launcher_config_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    proc = subprocess.run([sys.executable, "-m", "spmd_infer", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                           "--cfg", "hydra", "--package", "hydra.launcher"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SlurmLauncher" in proc.stdout and "partition: gpu" in proc.stdout and "max_num_timeout: 10" in proc.stdout


@pytest.mark.parametrize("env, visible, expected", [
    ({"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}, 2, "cuda:1"),  # torchrun, one rank a GPU
    ({"LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "4"}, 2, None),  # torchrun, two ranks a GPU: refused up front
    ({"LOCAL_RANK": "3"}, 1, "cuda:0"),  # a Slurm task bound to its one GPU (no LOCAL_WORLD_SIZE)
    ({}, 4, "cuda:0"),  # a lone process
])
def test_each_rank_gets_a_gpu_of_its_own(env, visible, expected, monkeypatch):
    """More torchrun ranks on a host than GPUs would share a GPU, which NCCL refuses only later, at its first
    collective: the job stops at once, saying what to change."""
    for name in ("LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: visible)
    if expected is None:
        with pytest.raises(ConfigError, match="--nproc-per-node 2"):
            resolve_device("auto")
    else:
        assert str(resolve_device("auto")) == expected
    assert str(resolve_device("cpu")) == "cpu"
