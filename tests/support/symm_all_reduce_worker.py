"""One rank of the symmetric-memory all-reduce test on CUDA GPUs (tests/test_symm_all_reduce.py launches it under
torchrun): comm.all_reduce through the symmetric path against NCCL's all-reduce of the same values, eagerly and
replayed from a CUDA graph, at push, one-shot, two-shot and fall-back sizes; the push kernel ending in the residual
add and RMSNorm against NCCL's sum then the RMSNorm kernel, bit for bit."""

from __future__ import annotations


import torch
import torch.distributed as dist
from cuda_rank import init_cuda_rank
from spmd_kernels import rms_norm

from spmd_infer.parallel.comm import PartialSums, Shard, all_reduce
from spmd_infer.parallel.symm_all_reduce import enable_symmetric_all_reduce, symmetric_all_reduce_for

HIDDEN = 4096
BUFFER_BYTES = 4 * 2**20  # 512 rows of HIDDEN in bf16: 600 rows fall back to NCCL; the push slots take 256 rows


def main() -> None:
    rank, world, device, group = init_cuda_rank()
    assert enable_symmetric_all_reduce("symmetric", group, world, device, torch.bfloat16, BUFFER_BYTES,
                                       row_width=HIDDEN)
    fast = symmetric_all_reduce_for(group)
    shard = Shard(rank, world, group)
    seen = set()
    for rows, cols in ((1, HIDDEN), (7, HIDDEN), (64, HIDDEN), (256, HIDDEN), (300, HIDDEN), (600, HIDDEN),
                       (2, 2 * HIDDEN), (3, 1000), (5, 7)):
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
    assert seen == {"push", "one_shot", "two_shot", "nccl"}, seen

    def add_norm_pair(rows: int, seed: int):
        g = torch.Generator(device=device).manual_seed(seed)
        x = torch.randn(rows, HIDDEN, device=device, generator=g).to(torch.bfloat16)
        g = torch.Generator(device=device).manual_seed(seed + 1)  # the same on every rank, as the residual stream is
        residual = torch.randn(rows, HIDDEN, device=device, generator=g).to(torch.bfloat16)
        return x, residual

    weight = (1 + 0.1 * torch.randn(HIDDEN, device=device, generator=torch.Generator(device=device).manual_seed(7))
              ).to(torch.bfloat16)

    def unfused(x, residual):
        want = x.clone()
        dist.all_reduce(want, group=group)
        return rms_norm(want, weight, 1e-5, residual)

    for rows in (1, 3, 64, 256):
        x, residual = add_norm_pair(rows, 10 * rows + rank)
        got = PartialSums(x, shard).add_norm(residual, weight, 1e-5)
        assert got is not None, f"{rows} rows: the push kernel should take the norm"
        want = unfused(x, residual)
        assert torch.equal(got[1], want[1]) and torch.equal(got[0], want[0]), f"add_norm at {rows} rows"
    assert PartialSums(torch.zeros(300, HIDDEN, dtype=torch.bfloat16, device=device), shard).add_norm(
        torch.zeros(300, HIDDEN, dtype=torch.bfloat16, device=device), weight, 1e-5) is None

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
    # The norm-ending kernel in a graph, two launches a replay (the layers' pattern), new inputs each replay.
    for rows in (1, 64):
        x_in, r_in = (torch.zeros(rows, HIDDEN, dtype=torch.bfloat16, device=device) for _ in range(2))
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            PartialSums(x_in, shard).add_norm(r_in, weight, 1e-5)  # warm
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            y1, h1 = PartialSums(x_in, shard).add_norm(r_in, weight, 1e-5)
            y2, h2 = PartialSums(y1 * 0.5, shard).add_norm(h1, weight, 1e-5)
        for step in range(3):
            x, residual = add_norm_pair(rows, 5000 + 100 * step + 10 * rows + rank)
            x_in.copy_(x)
            r_in.copy_(residual)
            graph.replay()
            w1 = unfused(x, residual)
            w2 = unfused(w1[0] * 0.5, w1[1])
            assert all(torch.equal(a, b) for a, b in ((y1, w1[0]), (h1, w1[1]), (y2, w2[0]), (h2, w2[1]))), \
                f"add_norm graph replay {step} at {rows} rows"
    dist.barrier(group=group)
    if rank == 0:
        print("SYMMETRIC ALL-REDUCE OK", sorted(seen))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
