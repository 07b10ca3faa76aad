"""One rank of the symmetric-memory setup test (tests/test_symm_all_reduce.py launches 2 under torchrun on gloo, CPU):
symmetric memory faked, its allocation failing on rank 1 only. Every rank must come back with the fallback (no
buffers) and none may enter the rendezvous, where it would wait for rank 1 forever; with no failure all map."""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.distributed._symmetric_memory as symm_mem

from spmd_infer.parallel import symm_all_reduce
from spmd_infer.parallel.push_all_reduce import make_push_buffers
from spmd_infer.parallel.symm_setup import map_symmetric


def main() -> None:
    dist.init_process_group("gloo")
    rank, group, cpu = dist.get_rank(), dist.group.WORLD, torch.device("cpu")
    failing, entered = {1}, []

    def empty(n, dtype, device):
        if rank in failing:
            raise RuntimeError("no symmetric memory here")
        return torch.empty(n, dtype=dtype, device=device)

    def rendezvous(buffer, group_name):
        entered.append(group_name)
        return SimpleNamespace(buffer_ptrs=[buffer.data_ptr()] * dist.get_world_size())

    symm_mem.empty, symm_mem.rendezvous = empty, rendezvous
    assert map_symmetric(group, cpu, [(8, torch.float32)], "test") is None
    assert make_push_buffers(group, cpu, torch.float32, 4, 16) is None
    assert symm_all_reduce._make(group, cpu, torch.float32, 1024) is None
    assert map_symmetric(group, cpu, [(8, torch.float32)], "test", ready=rank != 0) is None  # rank 0's own check
    assert not entered, f"rank {rank} entered a rendezvous its peer skipped"
    failing.clear()
    mapped = map_symmetric(group, cpu, [(8, torch.float32), (3, torch.int32)], "test")
    assert mapped is not None and len(entered) == 2 and torch.equal(mapped[1][0], torch.zeros(3, dtype=torch.int32))
    dist.barrier()
    if rank == 0:
        print("SYMMETRIC SETUP OK")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
