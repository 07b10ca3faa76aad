"""bench.load=true: random weights written as a Hugging Face safetensors checkpoint (in the model's dtype, or in the
block-float8 format of DeepSeek-V3's release), so the real loader is timed."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist

from .block_fp8_writer import quantization_config, write_block_fp8

FP8_BLOCK = (128, 128)  # the block of DeepSeek-V3's and Qwen3's float8 releases

log = logging.getLogger(__name__)


def write_random_checkpoint(hf_config: Any, folder: Path, device: torch.device, dtype: torch.dtype,
                            fp8: bool = False) -> None:
    """transformers' own model class writes it, so tensor names and shapes are those of a real checkpoint; `fp8`:
    then rewritten a file at a time in the block-float8 format (block_fp8_writer)."""
    from transformers import AutoModelForCausalLM

    # Built on the device: random initialisation of billions of weights is seconds there, minutes on the host.
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(hf_config, dtype=dtype)
    model.save_pretrained(folder, max_shard_size="5GB")
    del model
    if fp8:
        write_block_fp8(folder, folder, FP8_BLOCK, device=device)
    if device.type == "cuda":  # the engine sizes its KV cache from the free memory: none left held in torch's cache
        torch.cuda.empty_cache()


class BenchCheckpoint:
    """Global rank 0 writes the checkpoint while the others wait; every rank gets its folder."""

    def __init__(self, hf_config: Any, folder: Optional[str], device: torch.device, dtype: torch.dtype,
                 group: dist.ProcessGroup, fp8: bool = False):
        self.temporary = folder is None
        self.group = group
        started = time.perf_counter()
        path = [None]
        if dist.get_rank() == 0:
            path[0] = tempfile.mkdtemp(prefix="spmd_infer_bench_") if folder is None else folder
            write_random_checkpoint(hf_config, Path(path[0]), device, dtype, fp8)
            log.info("wrote a random-weight checkpoint to %s in %.1f s", path[0], time.perf_counter() - started)
        # Temp dirs are per host: ranks on other nodes need bench.checkpoint_dir on a shared file system.
        dist.broadcast_object_list(path, src=0, group=group)
        dist.barrier(group=group)
        self.path = Path(path[0])
        self.seconds = time.perf_counter() - started
        if fp8:  # the engine reads the format from the config, as from the checkpoint's config.json
            hf_config.quantization_config = quantization_config(FP8_BLOCK)

    def remove(self) -> None:
        dist.barrier(group=self.group)  # every rank has finished reading
        if self.temporary and dist.get_rank() == 0:
            shutil.rmtree(self.path, ignore_errors=True)
