"""One rank of the symmetric-memory all-reduce test on CUDA GPUs (tests/test_symm_all_reduce.py launches it under
torchrun): comm.all_reduce through the symmetric path against NCCL's all-reduce of the same values, eagerly and
replayed from a CUDA graph, at one-shot, two-shot and fall-back sizes."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from spmd_infer.parallel.comm import Shard, all_reduce
from spmd_infer.parallel.symm_all_reduce import enable_symmetric_all_reduce, symmetric_all_reduce_for

HIDDEN = 4096
BUFFER_BYTES = 2 * 2**20  # 256 rows of HIDDEN in bf16: 300 rows fall back to NCCL


def main() -> None:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    torch.cuda.set_device(device)
    dist.init_process_group("nccl", device_id=device)
    group = dist.new_group(list(range(world)))
    assert enable_symmetric_all_reduce("symmetric", group, world, device, torch.bfloat16, BUFFER_BYTES)
    fast = symmetric_all_reduce_for(group)
    shard = Shard(rank, world, group)
    seen = set()
    for rows, cols in ((1, HIDDEN), (7, HIDDEN), (64, HIDDEN), (256, HIDDEN), (300, HIDDEN), (3, 1000), (5, 7)):
        g = torch.Generator(device=device).manual_seed(100 * rows + rank)
        x = torch.randn(rows, cols, device=device, generator=g).to(torch.bfloat16)
        want = x.clone()
        dist.all_reduce(want, group=group)
        kept = x.clone()
        got = all_reduce(x, shard)
        path = fast.algorithm(kept)
        seen.add(path)
        if path != "nccl":
            assert torch.equal(x, kept), f"{rows}x{cols}: the symmetric path must leave its input as it was"
        assert torch.equal(got, want), f"{rows}x{cols} ({path}): max diff {(got.float() - want.float()).abs().max()}"
    assert seen == {"one_shot", "two_shot", "nccl"}, seen

    # Inside a CUDA graph, as decode steps run it: replays with new inputs give the new sums.
    for rows in (1, 64, 256):
        static = torch.zeros(rows, HIDDEN, dtype=torch.bfloat16, device=device)
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            all_reduce(static, shard)  # warm
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            out = all_reduce(static * 1, shard)
        for step in range(3):
            g = torch.Generator(device=device).manual_seed(1000 * step + 10 * rows + rank)
            static.copy_(torch.randn(rows, HIDDEN, device=device, generator=g).to(torch.bfloat16))
            graph.replay()
            want = static.clone()
            dist.all_reduce(want, group=group)
            assert torch.equal(out, want), f"graph replay {step} at {rows} rows"
    dist.barrier(group=group)
    if rank == 0:
        print("SYMMETRIC ALL-REDUCE OK", sorted(seen))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
