"""Command line: `python -m spmd_infer.bench` (one rank) or under torchrun (many), with Hydra overrides."""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from .config import register_bench_configs


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


@hydra.main(config_path="pkg://spmd_infer_configs", config_name="bench", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    from ..failure import exit_config_error
    from ..job import release_distributed
    from ..parallel.dims import ConfigError
    from .run import run_bench

    if _rank() != 0:
        # One console (rank 0's); every rank still writes its own log file in the run dir.
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.ERROR)
    try:
        run_bench(cfg)
    except ConfigError as e:
        exit_config_error(e, "spmd-infer bench")
    finally:
        release_distributed(keep_group=True)  # until end_process: a teardown racing a peer's exit can abort a rank


def main() -> None:
    register_bench_configs()
    if _rank() != 0 and not any(a.startswith("hydra.output_subdir") for a in sys.argv):
        sys.argv.append("hydra.output_subdir=null")  # .hydra/ is written once, by rank 0
    from ..job import run_to_end

    run_to_end(_hydra_main)


if __name__ == "__main__":
    main()
