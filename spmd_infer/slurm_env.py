"""torch.distributed's rank variables from Slurm's, for ranks that srun or submitit start without torchrun."""

from __future__ import annotations

import os
import re
import subprocess
from typing import MutableMapping


def torch_env_from_slurm(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT from a Slurm step; True if it did.

    Only inside a step of several tasks (srun with one task per GPU, as hydra-submitit-launcher runs
    them) and only where torchrun has not set RANK: SLURM_STEP_NUM_TASKS is set by srun, not in the
    batch script itself, so a lone `spmd-infer` in an allocation of many tasks stays a world of one.
    """
    if "RANK" in environ or int(environ.get("SLURM_STEP_NUM_TASKS", "1")) <= 1:
        return False
    nodes = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST") or "localhost"
    job, step = int(environ.get("SLURM_JOB_ID", "0")), int(environ.get("SLURM_STEP_ID", "0") or 0)
    environ.update(
        RANK=environ["SLURM_PROCID"], WORLD_SIZE=environ["SLURM_STEP_NUM_TASKS"],
        LOCAL_RANK=environ.get("SLURM_LOCALID", "0"),
        MASTER_ADDR=environ.get("MASTER_ADDR") or first_host(nodes),
        # Every task computes the same port from the job and step ids; two jobs sharing a head node differ.
        MASTER_PORT=environ.get("MASTER_PORT") or str(15000 + (job * 31 + step) % 20000))
    return True


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list ("gpu[03-05,09],cpu1" -> "gpu03"), as the head node."""
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             timeout=30, check=True).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass  # no scontrol here: expand the first entry ourselves
    m = re.match(r"([^,\[]+)(?:\[([^\],-]+))?", nodelist)
    return m.group(1) + (m.group(2) or "") if m else nodelist
