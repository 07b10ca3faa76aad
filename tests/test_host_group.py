"""ParallelDims.host_group: the gloo group of every rank that tp > 1 jobs vote on a stop over, made once per process.

On the CPU the world group is gloo already; on CUDA the group is made at first use. Two gloo ranks here take the
CUDA branch (no group set by build_mesh): two jobs' dims share one group, the stop vote goes over it, and the
collective timeouts reach it once.
"""

from __future__ import annotations

import multiprocessing as mp

from support.launch import init_gloo_client, store_server

WORLD = 2


def _worker(rank: int, port: int, results) -> None:
    try:
        import torch

        from spmd_infer.parallel.dims import ParallelDims
        from spmd_infer.stop import StopRequest

        init_gloo_client(port, rank, WORLD)
        jobs = []
        for _ in range(2):  # two jobs of one launch (a sweep)
            dims = ParallelDims(dp=1, tp=WORLD, world_size=WORLD)
            dims.build_mesh(torch.device("cpu"))
            dims._host_group = None  # as build_mesh leaves it on CUDA
            jobs.append(dims)
        stops = [StopRequest(d) for d in jobs]  # every rank makes its vote group at job setup
        same = stops[0].vote_group is stops[1].vote_group is jobs[0].host_group
        listed = sum(g is jobs[0].host_group for g in jobs[0].groups())
        stops[0].signum = 15 if rank == 1 else 0  # the signal reached one TP rank only
        vote = stops[0].agreed(0, meta=None)
        results.put((rank, same, listed, vote))
    except BaseException as e:  # noqa: BLE001 - reported to the test
        results.put((rank, repr(e), None, None))


def test_tp_ranks_share_one_gloo_vote_group_per_process():
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    store = store_server()
    procs = [ctx.Process(target=_worker, args=(r, store.port, results)) for r in range(WORLD)]
    for p in procs:
        p.start()
    got = sorted(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    assert got == [(0, True, 1, 15), (1, True, 1, 15)], got
