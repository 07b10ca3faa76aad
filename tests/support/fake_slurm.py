"""Stand-in `srun` and `scontrol` on PATH, so the sbatch script runs on one machine as on a cluster."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# srun: skip its --options, then run the command once per node, here, as Slurm would on each node.
SRUN = """#!/usr/bin/env bash
while [[ "$1" == --* ]]; do shift; done
if [[ -n "${FAKE_SRUN_SLEEP:-}" ]]; then echo "srun: started"; exec sleep "$FAKE_SRUN_SLEEP"; fi
pids=()
for ((node = 0; node < SLURM_NNODES; node++)); do
    SLURM_NODEID=$node SLURM_PROCID=$node SLURM_LOCALID=0 SLURM_STEP_NUM_TASKS=$SLURM_NNODES "$@" &
    pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
exit $rc
"""

# scontrol: every "node" is this machine; other commands are recorded for the test to check.
SCONTROL = """#!/usr/bin/env bash
if [[ "$1 $2" == "show hostnames" ]]; then
    for ((node = 0; node < SLURM_NNODES; node++)); do echo localhost; done
else
    echo "$*" >> "$FAKE_SLURM_LOG"
fi
"""


def fake_slurm_env(tmp: Path, nodes: int, gpus_per_node: int, port: int) -> dict[str, str]:
    """Environment for running launch/slurm/spmd_infer.sbatch with the stand-ins."""
    bin_dir = tmp / "fake-slurm-bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("srun", SRUN), ("scontrol", SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242", "SLURM_NNODES": str(nodes),
        "SLURM_JOB_NODELIST": f"node[1-{nodes}]", "GPUS_PER_NODE": str(gpus_per_node), "MASTER_PORT": str(port),
        "TORCHRUN": f"{sys.executable} -m torch.distributed.run", "FAKE_SLURM_LOG": str(tmp / "scontrol.log"),
        "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
    }
