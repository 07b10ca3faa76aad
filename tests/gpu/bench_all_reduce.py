"""Microseconds per all-reduce of a bf16 [rows, hidden] activation across the GPUs of one host, inside CUDA graphs as
the decode step runs them: NCCL against PyTorch's symmetric-memory one-shot (copy fused) and two-shot all-reduces as
spmd_infer/parallel/symm_all_reduce.py calls them, and our push kernel (kernels/push_all_reduce.py, up to --push-rows
rows), each result checked against NCCL's; then the all-reduce with the RMSNorm after it: the one-shot kernel and the
RMSNorm kernel against the push kernel ending in the norm. Run under torchrun, one process a GPU:

    torchrun --nproc-per-node 2 tests/gpu/bench_all_reduce.py [--hidden 4096] [--rows 1,16,64,256,1024,4096]
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
import torch.distributed._symmetric_memory as symm_mem
from spmd_kernels import rms_norm
from spmd_kernels.push_all_reduce import push_all_reduce, push_all_reduce_supports
from sweep_tools import graph_replay_us

from spmd_infer.parallel.push_all_reduce import PUSH_MAX_ROWS, make_push_buffers

CALLS = 50  # all-reduces captured into one graph: one replay times them back to back, as a model's layers would


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--rows", default="1,16,64,256,1024,4096")
    ap.add_argument("--push-rows", type=int, default=PUSH_MAX_ROWS, help="rows the push kernel's slots hold")
    ap.add_argument("--programs-per-sm", type=int, default=0,
                    help="the push kernel's grid: at most this many an SM (0: as many as fit, the engine's choice)")
    args = ap.parse_args()
    rank = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", device_id=torch.device("cuda", rank))
    group = dist.group.WORLD
    rows = [int(r) for r in args.rows.split(",")]
    dev = torch.device("cuda", rank)
    buf = symm_mem.empty(max(rows) * args.hidden, dtype=torch.bfloat16, device=dev)
    symm_mem.rendezvous(buf, group.group_name)
    push = make_push_buffers(group, dev, torch.bfloat16, args.push_rows, args.hidden)
    assert push is not None, "the push kernel's buffers could not be made"
    weight = torch.ones(args.hidden, dtype=torch.bfloat16, device=dev)
    dist.barrier(group=group)  # every rank's zeroed flags in place before a peer raises one
    if rank == 0:
        print(f"{torch.cuda.get_device_name()} x {dist.get_world_size()}, hidden {args.hidden}, bf16; us per call "
              f"in CUDA graphs ({CALLS} a graph); push: at most {args.programs_per_sm or 'as many as fit'} an SM")
        print(f"{'rows':>6} {'KiB':>8} {'nccl':>8} {'one_shot':>9} {'two_shot':>9} {'push':>8} {'one+norm':>9} "
              f"{'push+norm':>10}  max |diff| one / two / push; norm")
    for n in rows:
        g = torch.Generator(device=dev).manual_seed(rank * 1000 + n)
        x = torch.randn(n, args.hidden, device=dev, generator=g).to(torch.bfloat16)
        y_nccl, y_one = x.clone(), torch.empty_like(x)
        view = buf[: x.numel()].view_as(x)

        def nccl():
            y_nccl.copy_(x)
            dist.all_reduce(y_nccl, group=group)

        def one_shot():
            torch.ops.symm_mem.one_shot_all_reduce_copy_out(view, x, "sum", group.group_name, y_one)

        y_two = torch.empty_like(x)

        def two_shot():
            view.copy_(x)
            torch.ops.symm_mem.two_shot_all_reduce_out(view, "sum", group.group_name, y_two)

        pushes = push_all_reduce_supports(x, push.peers)
        y_push = torch.empty_like(x)
        residual = torch.randn(n, args.hidden, device=dev, generator=g).to(torch.bfloat16)

        def push_sum():
            y_push.copy_(push_all_reduce(x, push.peers, programs_per_sm=args.programs_per_sm or None))

        normed = {}

        def one_norm():
            one_shot()
            normed["one"] = rms_norm(y_one, weight, 1e-5, residual)

        def push_norm():
            normed["push"] = push_all_reduce(x, push.peers, residual, weight, 1e-5, args.programs_per_sm or None)

        cases = [("nccl", nccl), ("one_shot", one_shot), ("two_shot", two_shot), ("one+norm", one_norm)]
        if pushes:
            cases += [("push", push_sum), ("push+norm", push_norm)]
        times = {"push": float("nan"), "push+norm": float("nan")}
        for name, fn in cases:
            try:
                times[name] = graph_replay_us(lambda _: fn(), CALLS)
            except Exception as err:  # one op missing on this build must not hide the others
                times[name] = float("nan")
                if rank == 0:
                    print(f"  {name} failed: {type(err).__name__}: {str(err)[:200]}")
        nccl()
        one_shot()
        d_one = (y_one.float() - y_nccl.float()).abs().max().item()
        two_shot()
        d_two = (y_two.float() - y_nccl.float()).abs().max().item()
        d_push = d_norm = float("nan")
        if pushes:
            push_sum()
            d_push = (y_push.float() - y_nccl.float()).abs().max().item()
            one_norm()
            push_norm()
            d_norm = max((a.float() - b.float()).abs().max().item() for a, b in zip(normed["one"], normed["push"]))
        if rank == 0:
            print(f"{n:6d} {x.numel() * 2 / 1024:8.0f} {times['nccl']:8.1f} {times['one_shot']:9.1f} "
                  f"{times['two_shot']:9.1f} {times['push']:8.1f} {times['one+norm']:9.1f} {times['push+norm']:10.1f}"
                  f"  {d_one:.3g} / {d_two:.3g} / {d_push:.3g}; {d_norm:.3g}")
    dist.barrier(group=group)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
