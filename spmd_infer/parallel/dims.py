"""ParallelDims: validates dp x tp against the world, builds the one (dp, tp) DeviceMesh, names the groups."""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A job configuration that cannot run; the message says what to change."""


def resolve_device(requested: str) -> torch.device:
    if requested not in ("auto", "cuda", "cpu"):
        raise ConfigError(f"runtime.device={requested!r} is not one of auto, cuda, cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("runtime.device=cuda but no CUDA device is visible; use runtime.device=cpu or auto")
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    local_rank, visible = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    # torchrun sets LOCAL_WORLD_SIZE and every rank it starts sees the host's GPUs, so more ranks than GPUs would put
    # two ranks on one GPU, which NCCL refuses only later, at its first collective ("Duplicate GPU detected"). A
    # Slurm step bound one GPU a task (CUDA_VISIBLE_DEVICES per task) sets no LOCAL_WORLD_SIZE: there the modulo
    # below maps every task to its one visible GPU.
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "0"))
    if local_world > visible:
        raise ConfigError(
            f"{local_world} ranks on this host (torchrun --nproc-per-node) but {visible} visible GPU(s): NCCL runs "
            f"one rank a GPU; start at most --nproc-per-node {visible}, or run on the CPU with runtime.device=cpu")
    return torch.device("cuda", local_rank % visible)


# The gloo group of every rank behind ParallelDims.host_group, made once per process.
_gloo_world: Optional[dist.ProcessGroup] = None
# Its ranks make it at job setup right after a collective, so they arrive together: a host where gloo cannot connect
# fails the job within this many seconds rather than at the (long) load timeout.
HOST_GROUP_CONNECT_S = 120


def forget_host_group() -> None:
    """After the default group is destroyed (which destroys every group): the next host_group makes a new one."""
    global _gloo_world
    _gloo_world = None


@dataclass
class ParallelDims:
    dp: int
    tp: int
    world_size: int
    dp_attention: bool = False
    mesh: Optional[DeviceMesh] = field(default=None, repr=False)
    _host_group: Optional[dist.ProcessGroup] = field(default=None, repr=False, init=False)

    def validate(self) -> None:
        if self.dp < 1 or self.tp < 1:
            raise ConfigError(f"parallel.dp={self.dp} and parallel.tp={self.tp} must both be >= 1")
        if self.dp * self.tp != self.world_size:
            raise ConfigError(
                f"parallel.dp ({self.dp}) * parallel.tp ({self.tp}) = {self.dp * self.tp}, but the job has "
                f"WORLD_SIZE={self.world_size} processes; launch {self.dp * self.tp} processes "
                f"(torchrun --nproc-per-node ...) or change parallel.dp / parallel.tp so their product is "
                f"{self.world_size}")

    @property
    def dp_enabled(self) -> bool:
        return self.dp > 1

    @property
    def tp_enabled(self) -> bool:
        return self.tp > 1

    @property
    def mlp_ranks(self) -> int:
        """Ranks each MLP / MoE layer is split over: the TP group, or every rank with DP attention."""
        return self.dp * self.tp if self.dp_attention and self.dp > 1 else self.tp

    # Coordinates and groups, all derived from the mesh so nothing relies on the default group.
    @property
    def dp_rank(self) -> int:
        return self.mesh.get_local_rank("dp")

    @property
    def tp_rank(self) -> int:
        return self.mesh.get_local_rank("tp")

    @property
    def is_tp_leader(self) -> bool:
        return self.tp_rank == 0

    @property
    def dp_group(self) -> dist.ProcessGroup:
        return self.mesh.get_group("dp")

    @property
    def tp_group(self) -> dist.ProcessGroup:
        return self.mesh.get_group("tp")

    @property
    def world_group(self) -> dist.ProcessGroup:
        return self._world_group

    @property
    def host_group(self) -> dist.ProcessGroup:
        """Every rank over gloo, for agreements made on the host between steps (the stop vote): a CPU collective
        never waits for the GPU, where an NCCL one is queued behind the forward in flight and read back after it.
        On CUDA made at first use, which every rank must reach at the same point (creating a group is collective),
        once per process: the jobs of a sweep share it, as they share the default group (cli.py); on the CPU the
        world group is gloo already."""
        global _gloo_world
        if self._host_group is None:
            if _gloo_world is None:
                _gloo_world = dist.new_group(backend="gloo",
                                             timeout=datetime.timedelta(seconds=HOST_GROUP_CONNECT_S))
            self._host_group = _gloo_world
        return self._host_group

    def groups(self) -> list[dist.ProcessGroup]:
        """The job's process groups made so far (the host group only once used)."""
        made = [self.world_group, self.dp_group, self.tp_group]
        if self._host_group is not None and all(g is not self._host_group for g in made):
            made.append(self._host_group)
        return made

    def build_mesh(self, device: torch.device) -> DeviceMesh:
        self.mesh = init_device_mesh(device.type, (self.dp, self.tp), mesh_dim_names=("dp", "tp"))
        # The flattened dp*tp group: DP-attention MLP/MoE collectives and job-wide agreement (KV blocks).
        self._world_group = self.mesh._flatten("world").get_group()
        self._host_group = None if device.type == "cuda" else self._world_group
        log.info("mesh dp=%d x tp=%d on %s (this rank: dp_rank=%d tp_rank=%d)", self.dp, self.tp, device.type,
                 self.dp_rank, self.tp_rank)
        return self.mesh


def init_distributed(device: torch.device, timeout_s: float = 600.0) -> tuple[int, int]:
    """Start the default process group (torchrun's env://) or a 1-process one; returns (rank, world)."""
    if not dist.is_initialized():
        store = {}
        if "RANK" not in os.environ:
            # `spmd-infer` without torchrun: a world of one, its store bound to a free port at once (a port picked
            # free beforehand could be taken by a job started beside it before the store bound it).
            tcp = dist.TCPStore("127.0.0.1", 0, world_size=1, is_master=True,
                                timeout=datetime.timedelta(seconds=timeout_s))
            os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                              MASTER_PORT=str(tcp.port))
            store = dict(store=tcp, rank=0, world_size=1)
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s),
                                device_id=device if device.type == "cuda" else None, **store)
    return dist.get_rank(), dist.get_world_size()

