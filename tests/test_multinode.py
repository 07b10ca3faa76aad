"""Two nodes without a cluster: the sbatch script, through stand-in srun/scontrol, starts two torchrun agents
(2 ranks each, c10d rendezvous on localhost) for a dp2 x tp2 job, whose outputs must equal the one-node ones."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from support.fake_slurm import fake_slurm_env
from support.launch import REPO, _free_port, launch_env
from support.tiny_models import MAX_NEW, read_output

SBATCH = REPO / "launch" / "slurm" / "spmd_infer.sbatch"


def test_sbatch_two_agents_dp2_tp2_match_one_node(tiny, tmp_path):
    env = launch_env(4, fake_slurm_env(tmp_path, nodes=2, gpus_per_node=2, port=_free_port()))
    args = [f"model.path={tiny['models']['llama']}", f"data.input={tiny['inputs']['mixed']}", "data.output=out.jsonl",
            "parallel.dp=2", "parallel.tp=2", "sampling.temperature=0", f"sampling.max_tokens={MAX_NEW}"]
    proc = subprocess.run(["bash", str(SBATCH), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    # The one-node outputs of this job equal transformers' (tests/test_layouts.py); so must the two-node ones.
    assert [r["token_ids"] for r in read_output(tmp_path / "out.jsonl")] == tiny["refs"][("llama", "mixed")]
    assert "rendezvous at localhost:" in proc.stdout
    assert proc.stdout.count("spmd-infer finished") == 1, "only global rank 0 prints the summary"
    run = tmp_path / "out.jsonl.run"
    assert sorted(p.name for p in run.glob("rank*.log")) == [f"rank{r}.log" for r in range(4)]
    assert (run / "metrics.json").is_file() and (run / "report.html").is_file()


def test_sbatch_requeues_when_the_time_limit_nears(tmp_path):
    """--signal=B:TERM@120 reaches the batch script, which requeues the job (resume does the rest)."""
    env = launch_env(4, {**fake_slurm_env(tmp_path, nodes=2, gpus_per_node=2, port=1), "FAKE_SRUN_SLEEP": "60"})
    log = tmp_path / "batch.out"
    with open(log, "w") as out:
        proc = subprocess.Popen(["bash", str(SBATCH), "data.output=x.jsonl"], cwd=tmp_path, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while "srun: started" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)  # to the batch shell only, as B: does
        proc.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the stand-in srun; on a cluster, Slurm ends the steps
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"], log.read_text()
    assert "requeueing job 4242" in log.read_text()


def test_scripts_parse():
    for script in (SBATCH, REPO / "launch" / "run.sh"):
        subprocess.run(["bash", "-n", str(script)], check=True)
