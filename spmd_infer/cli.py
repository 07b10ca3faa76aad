"""Command line: `spmd-infer` / `python -m spmd_infer` (one rank) or under torchrun (many), with Hydra overrides."""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from .config import register_configs

log = logging.getLogger("spmd_infer")


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


@hydra.main(config_path="pkg://spmd_infer_configs", config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    from .job import release_distributed, run_job
    from .parallel.dims import ConfigError

    if _rank() != 0:
        # One console for the job (rank 0's); every rank still writes its own log file in the run dir.
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.ERROR)
    try:
        summary = run_job(cfg)
    except ConfigError as e:
        # Every rank reaches the same verdict before any collective; rank 0 says it, all exit non-zero.
        if _rank() == 0:
            print(f"spmd-infer: configuration error: {e}", file=sys.stderr)
        raise SystemExit(2)
    finally:
        release_distributed()
    if _rank() == 0 and summary is not None:
        print("spmd-infer finished")
        for line in summary.lines():
            print("  " + line)


def main() -> None:
    register_configs()
    if _rank() != 0 and not any(a.startswith("hydra.output_subdir") for a in sys.argv):
        sys.argv.append("hydra.output_subdir=null")  # .hydra/ is written once, by rank 0
    _hydra_main()


if __name__ == "__main__":
    main()
