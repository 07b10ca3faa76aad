"""The start of a multi-GPU test worker under torchrun: this rank's CUDA device, NCCL, and a group of all ranks."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_cuda_rank() -> tuple[int, int, torch.device, dist.ProcessGroup]:
    """(rank, world size, this rank's device, a new group of every rank) after NCCL's init on LOCAL_RANK's GPU."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    torch.cuda.set_device(device)
    dist.init_process_group("nccl", device_id=device)
    return rank, world, device, dist.new_group(list(range(world)))
