"""Command line: `spmd-infer` / `python -m spmd_infer` (one rank) or under torchrun (many), with Hydra overrides."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

import hydra
from omegaconf import DictConfig
from torch.distributed.elastic.multiprocessing.errors import record

from .config import register_configs
from .slurm_env import torch_env_from_slurm

log = logging.getLogger("spmd_infer")


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


@hydra.main(config_path="pkg://spmd_infer_configs", config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    from .data.openai_batch import FORMATS
    from .failure import JobStopped, exit_config_error, exit_failed, exit_stopped
    from .job import release_distributed, run_job
    from .parallel.dims import ConfigError
    from .report import summary_lines, write_run_report

    torch_env_from_slurm()  # hydra-submitit-launcher calls this function in each Slurm task, without torchrun
    logging.captureWarnings(True)  # library warnings go to each rank's log file, not to N consoles
    if _rank() != 0:
        # One console for the job (rank 0's); every rank still writes its own log file in the run dir.
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.ERROR)
    run_dir = _run_dir()
    _place_sweep_output(cfg, run_dir)
    try:
        if cfg.data.format not in FORMATS:
            raise ConfigError(f"data.format={cfg.data.format!r} must be one of {', '.join(FORMATS)}")
        summary = run_job(cfg)
    except ConfigError as e:  # the same verdict on every rank, before any collective
        exit_config_error(e)
    except JobStopped as e:  # a signal; every rank stopped after the same step, finished rows saved
        exit_stopped(e)
    except BaseException as e:  # noqa: BLE001 - any other failure: reported once (rank 0), exit 1 at once
        exit_failed(e)
    finally:
        # The group lives until the process ends (end_process): a sweep's jobs share it (tearing it down and
        # building it again on the same rendezvous store races in gloo's connectFullMesh), and a last job's
        # ranks leave without a teardown that can abort one of them.
        release_distributed(keep_group=True)
    if _rank() == 0 and summary is not None and summary.already_complete:
        print("spmd-infer: " + summary.lines()[0])
    elif _rank() == 0 and summary is not None:
        report = write_run_report(run_dir, summary.metrics)  # global rank 0 only: one writer per run directory
        print("spmd-infer finished")
        for line in summary_lines(summary.metrics) + ([f"report: {report}"] if report else []):
            print("  " + line)


def _run_dir() -> Optional[Path]:
    """This job's directory: hydra.run.dir (default <data.output>.run) or, in a sweep, its job's subdir."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else None


def _place_sweep_output(cfg: DictConfig, run_dir: Optional[Path]) -> None:
    """In a sweep (-m), a relative data.output goes inside each job's directory.

    Otherwise every job of the sweep would write the same file, and a later job would take the
    earlier one's output for its own finished work (a rerun on the same output resumes).
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if run_dir is None or HydraConfig.get().mode != RunMode.MULTIRUN or Path(cfg.data.output).is_absolute():
        return
    cfg.data.output = str(run_dir / cfg.data.output)
    log.info("sweep job %s: writing %s", HydraConfig.get().job.num, cfg.data.output)


def _sweep_under_torchrun(argv: list[str]) -> bool:
    sweep = any(a in ("-m", "--multirun") for a in argv)
    return sweep and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not any(a.startswith("hydra.sweep.dir=")
                                                                             for a in argv)


@record  # a failing rank's traceback reaches torchrun's error summary, even when its console is filtered
def main() -> None:
    torch_env_from_slurm()  # `srun python -m spmd_infer`: one task a GPU, no torchrun
    register_configs()
    if _sweep_under_torchrun(sys.argv):
        if _rank() == 0:
            print("spmd-infer: a sweep (-m) under torchrun needs hydra.sweep.dir=DIR, the same on every rank (the "
                  "default holds the start time, which differs between ranks); every job of it runs in this "
                  "world, so its layouts must all have dp * tp = WORLD_SIZE", file=sys.stderr)
        raise SystemExit(2)
    if _rank() != 0 and not any(a.startswith("hydra.output_subdir") for a in sys.argv):
        sys.argv.append("hydra.output_subdir=null")  # .hydra/ is written once, by rank 0
    from .job import run_to_end

    run_to_end(_hydra_main)


if __name__ == "__main__":
    main()
