"""Tensor-parallel all-reduces through PyTorch symmetric memory, where they beat NCCL (parallel.all_reduce).

Each rank of the group maps one buffer that every peer can read over NVLink (`symm_mem.empty` + `rendezvous`, made
once at engine start, before the KV cache is sized so its bytes count as used). An all-reduce is then one kernel
with no host work, so it sits inside the decode CUDA graphs as NCCL's does:
- push (kernels/push_all_reduce.py, with its own buffers: push_all_reduce.py): each rank stores its rows into the
  peers' memory and flags them, one way over NVLink; up to PUSH_MAX_ROWS rows of the model's width. The RMSNorm after
  o_proj, down_proj and MoE layers runs in the same kernel (SymmetricAllReduce.add_norm). 2 x H200: 4.7 us at 8
  KiB, 13.3 at 2 MiB; Llama-3-8B tp2 decode bs1 3.2 -> 3.0 ms, bs64 5.2 -> 4.7, bs256 9.9 -> 9.3-9.4
  (kernels/README.md has the table).
- one-shot (`one_shot_all_reduce_copy_out`): copies the local rows into the buffer, waits for the peers, sums every
  rank's buffer into a fresh output. Latency-bound messages (decode at small batches).
- two-shot (`two_shot_all_reduce_out`): each rank reduces its 1/world of the elements and the peers read the rest.
  Half the bytes over NVLink a rank for two barriers: ahead from about a MiB on.
Messages past the buffer, and tensors the ops cannot take, go through NCCL.

On 2 x H200 (NV18), inside CUDA graphs (tests/gpu/bench_all_reduce.py), microseconds per bf16 all-reduce:

    KiB      8     128    512    2048   16384  65536
    NCCL     7.6   8.8    11.5   28.5   84.3   276.9
    one      6.7   7.9    11.1   21.6   133.9  528.1
    two     10.1   -      12.8   19.2   74.9   275.5

(the two-shot row writing a separate output, as here; in place it was 9.2 at 512 KiB and 14.7 at 2 MiB, but its
result would then need a copy out of the buffer). Llama-3-8B at tp2, decode @1k, ms a step NCCL -> symmetric:
bs256 10.8 -> 10.0, bs64 5.2 -> 5.2, bs1 3.3 -> 3.2; prefill 8 x 2048 the same (a first cut with two-shot from 256
KiB made bs64 5.4: the crossover is near a MiB).

Both sum two ranks' values in one addition, the same bits as NCCL's (checked there); over more ranks the order of
the additions may differ from NCCL's.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch
import torch.distributed as dist

from spmd_kernels.push_all_reduce import push_all_reduce, push_all_reduce_supports

from .push_all_reduce import PUSH_MAX_ROWS, PUSH_ON, PushBuffers, make_push_buffers
from .shm_exchange import group_on_one_host
from .symm_setup import map_symmetric, on_every_rank

log = logging.getLogger(__name__)

MODES = ("auto", "nccl", "symmetric")
ONE_SHOT_MAX_BYTES = 2**20  # one-shot at or below: ahead of two-shot at 512 KiB, behind at 2 MiB
MAX_BUFFER_BYTES = 32 * 2**20  # the largest buffer made: past it (prefill chunks) NCCL is as fast (the table)
AUTO_WORLD_SIZES = (2,)  # group sizes `auto` takes it for: those measured (4 and 8 GPUs were never lent to us)


def choose_algorithm(nbytes: int, world: int, buffer_bytes: int) -> str:
    """'one_shot', 'two_shot' or 'nccl' for a contiguous message of `nbytes` over `world` ranks.

    The kernels move 16-byte vectors, and two-shot splits them evenly over the ranks: other sizes go through NCCL,
    as do messages past the buffer.
    """
    if nbytes == 0 or nbytes > buffer_bytes or nbytes % 16:
        return "nccl"
    if nbytes <= ONE_SHOT_MAX_BYTES:
        return "one_shot"
    return "two_shot" if nbytes % (16 * world) == 0 else "nccl"


class SymmetricAllReduce:
    """The symmetric buffer of one process group and the all-reduce through it."""

    def __init__(self, group_name: str, world: int, buffer: torch.Tensor, push: Optional[PushBuffers] = None):
        self.group_name = group_name
        self.world = world
        self.buffer = buffer  # flat, in the activations' dtype, mapped by every rank of the group
        self.buffer_bytes = buffer.numel() * buffer.element_size()
        self.push = push  # kernels/push_all_reduce.py's buffers, where they could be made

    def algorithm(self, x: torch.Tensor) -> str:
        """'push', 'one_shot' or 'two_shot' for `x`, or 'nccl' where this path cannot take it (another dtype or
        device, a strided tensor, a size choose_algorithm leaves to NCCL)."""
        if x.dtype != self.buffer.dtype or not x.is_contiguous() or x.device != self.buffer.device:
            return "nccl"
        if self.push is not None and push_all_reduce_supports(x, self.push.peers):
            return "push"
        return choose_algorithm(x.numel() * x.element_size(), self.world, self.buffer_bytes)

    def add_norm(self, x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                 eps: float) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """(rms_norm(sum + residual) * weight, sum + residual) for x's sum over the group, in one push kernel; None
        where that kernel does not take x (the caller reduces, then norms)."""
        if self.algorithm(x) != "push" or residual.dtype != x.dtype or not residual.is_contiguous():
            return None
        return push_all_reduce(x, self.push.peers, residual, weight, eps)

    def __call__(self, x: torch.Tensor, algorithm: str) -> torch.Tensor:
        """The sum of `x` over the group, in a new tensor (x is left as it was), by `algorithm(x)` (not 'nccl')."""
        if algorithm == "push":
            return push_all_reduce(x, self.push.peers)
        staged = self.buffer[: x.numel()].view_as(x)
        out = torch.empty_like(x)
        if algorithm == "one_shot":
            torch.ops.symm_mem.one_shot_all_reduce_copy_out(staged, x, "sum", self.group_name, out)
        else:
            staged.copy_(x)
            torch.ops.symm_mem.two_shot_all_reduce_out(staged, "sum", self.group_name, out)
        return out


# Per process group (by name), made once per process: the jobs of a sweep share their groups (cli.py), so they share
# the buffers too; `forget_symmetric_all_reduces` drops them when the groups are destroyed.
_by_group: dict[str, SymmetricAllReduce] = {}


def symmetric_all_reduce_for(group: Optional[dist.ProcessGroup]) -> Optional[SymmetricAllReduce]:
    """The symmetric path made for `group`, if any (comm.all_reduce asks on every call)."""
    return _by_group.get(group.group_name) if group is not None and _by_group else None


def all_reduce_path(group: Optional[dist.ProcessGroup], world: int) -> str:
    """What the all-reduces over a group of `world` ranks go through, for reports: none (one rank), symmetric+push
    (small ones through the push kernel, ending in the next norm), symmetric, or the group's backend (nccl, gloo)."""
    if world == 1:
        return "none"
    fast = symmetric_all_reduce_for(group)
    if fast is None:
        return str(dist.get_backend(group))
    return "symmetric+push" if fast.push is not None else "symmetric"


def forget_symmetric_all_reduces() -> None:
    """After the process groups are destroyed: their buffers go too (freed once no graph holds them)."""
    _by_group.clear()


def enable_symmetric_all_reduce(mode: str, group: dist.ProcessGroup, world: int, device: torch.device,
                                dtype: torch.dtype, max_message_bytes: int, row_width: int = 0) -> bool:
    """Make the symmetric path for `group` (a TP group of `world` ranks) where `mode` (parallel.all_reduce) asks
    for it; every rank of the group must call this at the same point (the rendezvous is a collective over it).
    `row_width` (the model's hidden size; 0: none) sizes the push kernel's slots. Returns whether all-reduces over
    `group` now take it."""
    if not symmetric_wanted(mode, group, world, device, "TP group"):
        return False
    existing = _by_group.get(group.group_name)
    wanted = min(MAX_BUFFER_BYTES, max(max_message_bytes, ONE_SHOT_MAX_BYTES))
    push_width = row_width if PUSH_ON else 0
    if existing is not None and existing.buffer.dtype == dtype and existing.buffer_bytes >= wanted and (
            not push_width or (existing.push is not None and existing.push.fits(PUSH_MAX_ROWS, push_width, dtype))):
        return True
    # Every rank must agree after each step, or one would wait in a symmetric kernel for a peer that went to NCCL
    # (or to the one-shot kernel, for the push path). (map_symmetric agrees before each rendezvous.)
    made = _make(group, device, dtype, wanted)
    if not on_every_rank(made is not None, group, device):
        if mode == "symmetric":
            raise RuntimeError("parallel.all_reduce=symmetric: symmetric memory could not be set up on every rank "
                               "of a TP group (see the warnings above); use parallel.all_reduce=auto or nccl")
        log.warning("symmetric all-reduce unavailable on some rank of this TP group: all-reduces stay on NCCL")
        return False
    push = make_push_buffers(group, device, dtype, PUSH_MAX_ROWS, push_width) if push_width else None
    push_ok = bool(push_width) and on_every_rank(push is not None, group, device)
    if push_width and not push_ok:
        log.warning("push all-reduce unavailable on some rank of this TP group: small all-reduces take the one-shot "
                    "kernel")
    made.push = push if push_ok else None
    _by_group[group.group_name] = made
    log.info("TP all-reduces through symmetric memory (%d ranks, %.1f MiB buffer; %sone-shot to %d KiB, two-shot "
             "above, NCCL past the buffer)", world, made.buffer_bytes / 2**20,
             f"push to {PUSH_MAX_ROWS} rows of {push_width}, " if made.push else "", ONE_SHOT_MAX_BYTES // 1024)
    return True


def symmetric_wanted(mode: str, group: dist.ProcessGroup, world: int, device: torch.device, what: str) -> bool:
    """Whether `mode` (parallel.all_reduce) asks for symmetric memory on `group` (`what`: its role, for errors), a
    group of `world` ranks on `device`: never with nccl or one rank, on CPUs or across hosts; with auto for the group
    sizes measured (AUTO_WORLD_SIZES). Errors say what to change where symmetric is forced but cannot be had. Every
    rank of the group must call it at the same point (it gathers the host names over the group)."""
    if mode not in MODES:
        raise ValueError(f"parallel.all_reduce={mode!r} must be one of {', '.join(MODES)}")
    if mode == "nccl" or world == 1:
        return False
    if device.type != "cuda":
        if mode == "symmetric":
            raise ValueError("parallel.all_reduce=symmetric needs CUDA GPUs (symmetric memory over NVLink); "
                             "on CPUs use parallel.all_reduce=auto or nccl (gloo all-reduces either way)")
        return False
    if mode == "auto" and world not in AUTO_WORLD_SIZES:
        return False
    if not group_on_one_host(group):  # torchrun and Slurm alike: the ranks' host names, gathered over the group
        if mode == "symmetric":
            raise ValueError(f"parallel.all_reduce=symmetric needs each {what} on one host: this job's "
                             f"{world}-rank {what}s span hosts; use parallel.all_reduce=auto or nccl")
        return False
    return True


def _make(group: dist.ProcessGroup, device: torch.device, dtype: torch.dtype,
          nbytes: int) -> Optional[SymmetricAllReduce]:
    """The buffer, mapped by every peer; None (with a warning) where this build or driver cannot."""
    missing = [op for op in ("one_shot_all_reduce_copy_out", "two_shot_all_reduce_out")
               if not hasattr(torch.ops.symm_mem, op)]
    if missing:
        log.warning("symmetric all-reduce unavailable: torch.ops.symm_mem.%s missing from torch %s", missing[0],
                    torch.__version__)
    mapped = map_symmetric(group, device, [(nbytes // dtype.itemsize, dtype)], "symmetric all-reduce",
                           ready=not missing)
    return SymmetricAllReduce(group.group_name, dist.get_world_size(group), mapped[0][0]) if mapped else None
