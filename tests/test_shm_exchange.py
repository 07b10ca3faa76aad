"""The shared-memory DP exchange with real processes (gloo sets it up): every rank gets every rank's row for
every step whatever the arrival order, and a dead or stuck peer makes the others fail fast, naming it."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import time
import traceback

import numpy as np
import pytest

from support.launch import init_gloo_client, store_server

WORLD = 4
STEPS = 300


def _worker(rank: int, port: int, scenario: str, results) -> None:
    try:
        import torch.distributed as dist

        from spmd_infer.parallel.shm_exchange import ShmAllGather, group_on_one_host

        init_gloo_client(port, rank, WORLD)
        assert group_on_one_host(dist.group.WORLD)
        if scenario == "private" and rank == 2:  # as if in a container with a /dev/shm of its own
            import builtins

            real_open = builtins.open
            builtins.open = lambda path, *a, **k: (_ for _ in ()).throw(FileNotFoundError(path)) \
                if "spmd-infer-dp-" in str(path) else real_open(path, *a, **k)
        shm = ShmAllGather.open(dist.group.WORLD, WORLD, rank, width=3, timeout_s=2.0)
        if scenario == "private":
            results.put((rank, "none" if shm is None else "mapped"))
            return
        rng = random.Random(rank)
        for step in range(1, STEPS + 1):
            if scenario == "dies" and rank == 1 and step == 5:
                os._exit(0)  # gone without a word: the others must not wait for it
            if scenario == "stuck" and rank == 2 and step == 5:
                time.sleep(60)  # alive but never arrives
            if rng.random() < 0.05:
                time.sleep(rng.random() * 0.01)  # ranks arrive in every order
            rows = shm.all_gather(np.array([rank, step, rank * step], dtype=np.int64))
            expected = [[r, step, r * step] for r in range(WORLD)]
            assert rows.tolist() == expected, (step, rows.tolist())
        results.put((rank, "ok"))
    except BaseException as e:  # noqa: BLE001 - the parent checks what each rank saw
        results.put((rank, f"{type(e).__name__}: {e}" if not isinstance(e, AssertionError) else traceback.format_exc()))


def _run(scenario: str, timeout: float) -> dict:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    store = store_server()
    procs = [ctx.Process(target=_worker, args=(r, store.port, scenario, results)) for r in range(WORLD)]
    start = time.monotonic()
    for p in procs:
        p.start()
    out = {}
    deadline = start + timeout
    while len(out) < WORLD - (scenario in ("dies", "stuck")) and time.monotonic() < deadline:
        try:
            rank, msg = results.get(timeout=max(0.1, deadline - time.monotonic()))
            out[rank] = msg
        except Exception:  # noqa: BLE001 - queue.Empty at the deadline
            break
    for p in procs:
        p.kill() if p.is_alive() else None
        p.join(5)
    out["seconds"] = time.monotonic() - start
    return out


def test_every_rank_gets_every_row_of_every_step():
    out = _run("ok", timeout=120)
    assert [out.get(r) for r in range(WORLD)] == ["ok"] * WORLD, out


def test_ranks_that_cannot_share_the_segment_all_fall_back():
    out = _run("private", timeout=120)
    assert [out.get(r) for r in range(WORLD)] == ["none"] * WORLD, out


@pytest.mark.parametrize("scenario,rank,error", [("dies", 1, "RuntimeError: DP rank 1 (pid"),
                                                 ("stuck", 2, "TimeoutError: DP ranks [2] did not reach step 5")])
def test_a_missing_rank_fails_the_others_quickly_and_is_named(scenario, rank, error):
    out = _run(scenario, timeout=60)
    others = [r for r in range(WORLD) if r != rank]
    assert all(str(out.get(r, "")).startswith(error) for r in others), out
    assert out["seconds"] < 30, out


def test_mode_choice_needs_no_group_where_it_is_decided_locally():
    from spmd_infer.parallel.shm_exchange import make_shm_all_gather

    assert make_shm_all_gather(None, 1, 0, 3, "shm", 1.0) is None  # one DP rank: nothing to exchange
    assert make_shm_all_gather(None, 4, 0, 3, "collective", 1.0) is None
    with pytest.raises(ValueError, match="parallel.exchange='nccl' must be auto, shm or collective"):
        make_shm_all_gather(None, 4, 0, 3, "nccl", 1.0)
