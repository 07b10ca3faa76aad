"""bench.load=true: random weights written as a Hugging Face safetensors checkpoint, so the real loader is timed."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


def write_random_checkpoint(hf_config: Any, folder: Path, device: torch.device, dtype: torch.dtype) -> None:
    """transformers' own model class writes it, so tensor names and shapes are those of a real checkpoint."""
    from transformers import AutoModelForCausalLM

    # Built on the device: random initialisation of billions of weights is seconds there, minutes on the host.
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(hf_config, dtype=dtype)
    model.save_pretrained(folder, max_shard_size="5GB")
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()


class BenchCheckpoint:
    """Global rank 0 writes the checkpoint while the others wait; every rank gets its folder."""

    def __init__(self, hf_config: Any, folder: Optional[str], device: torch.device, dtype: torch.dtype,
                 group: dist.ProcessGroup):
        self.temporary = folder is None
        self.group = group
        started = time.perf_counter()
        path = [None]
        if dist.get_rank() == 0:
            path[0] = tempfile.mkdtemp(prefix="spmd_infer_bench_") if folder is None else folder
            write_random_checkpoint(hf_config, Path(path[0]), device, dtype)
            log.info("wrote a random-weight checkpoint to %s in %.1f s", path[0], time.perf_counter() - started)
        # Temp dirs are per host: ranks on other nodes need bench.checkpoint_dir on a shared file system.
        dist.broadcast_object_list(path, src=0, group=group)
        dist.barrier(group=group)
        self.path = Path(path[0])
        self.seconds = time.perf_counter() - started

    def remove(self) -> None:
        dist.barrier(group=self.group)  # every rank has finished reading
        if self.temporary and dist.get_rank() == 0:
            shutil.rmtree(self.path, ignore_errors=True)
