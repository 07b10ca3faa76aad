"""kernels/push_all_reduce.py against its reference: the ranks' buffers are tensors of this process, their
addresses in the pointer tables as symmetric memory would give them. Across real GPUs:
tests/test_symm_all_reduce.py."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spmd_kernels.push_all_reduce import (EPOCH_WRAP, PushPeers, push_all_reduce, push_all_reduce_ref,
                                          push_all_reduce_supports)
from spmd_kernels.rmsnorm import rms_norm

MAX_ROWS, ROW_STRIDE = 8, 160
REPO = Path(__file__).resolve().parents[2]


def next_epoch(epoch: int) -> int:
    return 1 if epoch >= EPOCH_WRAP.value else epoch + 1


# Where every rank's rows start counting: from nothing, and two calls before the epochs wrap.
STARTS = [0, EPOCH_WRAP.value - 2]


def group_buffers(world: int, dtype: torch.dtype, device, shared: bool = False,
                  start: int = 0) -> tuple[list, list, list[PushPeers]]:
    """Every rank's data slots and flags, zeroed (in shared memory: for forked ranks), and each rank's PushPeers
    over them, their rows' epochs at `start` (as if that many calls had run)."""
    data = [torch.zeros(2, world, MAX_ROWS, ROW_STRIDE, dtype=dtype, device=device) for _ in range(world)]
    # [0:world] the flags, then a gather's row marks [2, world] (PushPeers.flag_ptrs)
    flags = [torch.zeros(3 * world, MAX_ROWS, dtype=torch.int32, device=device) for _ in range(world)]
    if shared:  # moves the storage: before the addresses are taken
        data, flags = [t.share_memory_() for t in data], [t.share_memory_() for t in flags]
    data_ptrs = torch.tensor([d.data_ptr() for d in data], dtype=torch.int64, device=device)
    flag_ptrs = torch.tensor([f.data_ptr() for f in flags], dtype=torch.int64, device=device)
    epochs = [torch.full((MAX_ROWS,), start, dtype=torch.int32, device=device) for _ in range(world)]
    if shared:
        epochs = [t.share_memory_() for t in epochs]
    peers = [PushPeers(data_ptrs, flag_ptrs, epochs[rank], rank, world, MAX_ROWS, ROW_STRIDE) for rank in range(world)]
    return data, flags, peers


def inputs(world: int, rows: int, width: int, dtype, device, seed: int):
    g = torch.Generator().manual_seed(seed)
    parts = [torch.randn(rows, width, generator=g).to(dtype).to(device) for _ in range(world)]
    residual = torch.randn(rows, width, generator=g).to(dtype).to(device)
    weight = (1.0 + 0.1 * torch.randn(width, generator=g)).to(dtype).to(device)
    return parts, residual, weight


def expected(parts, residual, weight, eps):
    """The unfused path's bits: the reference sum, then the RMSNorm kernel (the same reduction order as the fused
    norm) for y and the reference's exact h."""
    total = push_all_reduce_ref(parts)
    y, h = rms_norm(total, weight, eps, residual)
    _, h_ref = push_all_reduce_ref(parts, residual, weight, eps)
    assert torch.equal(h, h_ref)
    return total, y, h


@pytest.mark.parametrize("start", STARTS)
@pytest.mark.parametrize("world,rank", [(2, 0), (2, 1), (3, 1)])
def test_one_rank_against_pushed_peers(world, rank, start, dtype, device):
    """One rank's kernel, its peers' pushes made by hand in its slots and flags: it must push its own rows to each
    peer and raise their flags, sum every rank's rows in rank order, and end in the norm, call after call (across
    the epochs' wrap too)."""
    data, flags, peers = group_buffers(world, dtype, device, start=start)
    eps = 1e-6
    for call, (rows, width) in enumerate([(3, 160), (1, 100), (5, 64), (3, 160)]):
        parts, residual, weight = inputs(world, rows, width, dtype, device, seed=call)
        for src in range(world):
            if src != rank:
                for row in range(rows):
                    e = next_epoch(int(peers[rank].epochs[row]))
                    data[rank][e % 2, src, row, :width] = parts[src][row]
                    flags[rank][src, row] = e
        epochs_before = peers[rank].epochs.clone()
        norm = call % 2 == 0
        got = push_all_reduce(parts[rank], peers[rank], residual if norm else None, weight if norm else None, eps)
        total, y, h = expected(parts, residual, weight, eps)
        if norm:
            assert torch.equal(got[1], h) and torch.equal(got[0], y), f"call {call}"
        else:
            assert torch.equal(got, total), f"call {call}"
        assert peers[rank].epochs[:rows].tolist() == [next_epoch(e) for e in epochs_before[:rows].tolist()]
        assert torch.equal(peers[rank].epochs[rows:], epochs_before[rows:])  # rows beyond this launch keep theirs
        for peer in range(world):
            if peer != rank:
                for row in range(rows):
                    e = int(peers[rank].epochs[row])
                    assert torch.equal(data[peer][e % 2, rank, row, :width], parts[rank][row])
                    assert int(flags[peer][rank, row]) == e


CONCURRENT_CALLS = [(4, 160), (1, 160), (6, 96), (4, 160), (2, 33)]


def run_forked_ranks(ranks: list[tuple], timeout: float) -> None:
    """Run each (function, args) in a forked process at once, as the ranks of a group (the interpreter cannot run two
    launches in one process while one waits on the other); fail if any is still waiting after `timeout` s or
    failed."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=fn, args=args, daemon=True) for fn, args in ranks]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=timeout)
    alive = [proc.is_alive() for proc in procs]
    for proc in procs:
        proc.kill() if proc.is_alive() else None
    assert not any(alive), "a rank is still waiting for a peer's flag"
    assert all(proc.exitcode == 0 for proc in procs), [proc.exitcode for proc in procs]


def _rank_process(rank, peers, calls, outs):
    """One rank's calls in a forked process (its own interpreter: the interpreter's launches cannot share a process
    while one waits on another); its results go into shared tensors."""
    for call, (parts, residual, weight) in enumerate(calls):
        y, h = push_all_reduce(parts[rank], peers[rank], residual, weight, 1e-5)
        outs[rank][call][0].copy_(y)
        outs[rank][call][1].copy_(h)


@pytest.mark.skipif(torch.cuda.is_available(), reason="concurrent ranks are processes of the CPU interpreter; on GPUs "
                                                       "tests/test_symm_all_reduce.py runs them across two cards")
@pytest.mark.parametrize("world,start", [(2, 0), (3, 0), (2, STARTS[1])])
def test_ranks_run_concurrently(world, start):
    """Every rank's kernel at once, each waiting on the others' flags (the interpreter's atomics are the CPU's),
    over calls of changing shapes: each rank gets the same bits, those of the unfused path."""
    dtype = torch.float16
    # Shared before the fork: every process then sees the same pages at the same addresses, as its pointer tables say.
    data, flags, peers = group_buffers(world, dtype, "cpu", shared=True, start=start)
    calls = [inputs(world, rows, width, dtype, "cpu", seed=10 + i) for i, (rows, width) in enumerate(CONCURRENT_CALLS)]
    outs = [[(torch.zeros_like(c[1]).share_memory_(), torch.zeros_like(c[1]).share_memory_()) for c in calls]
            for _ in range(world)]
    run_forked_ranks([(_rank_process, (rank, peers, calls, outs)) for rank in range(world)], timeout=120)
    for call, (parts, residual, weight) in enumerate(calls):
        _, y, h = expected(parts, residual, weight, 1e-5)
        for rank in range(world):
            assert torch.equal(outs[rank][call][0], y) and torch.equal(outs[rank][call][1], h), (call, rank)


def _one_call(peers, parts, residual, weight, out):
    y, _ = push_all_reduce(parts[0], peers[0], residual, weight, 1e-5)
    out.copy_(y)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a forked rank of the CPU interpreter")
@pytest.mark.parametrize("start", [0, 5, EPOCH_WRAP.value])
def test_waits_for_the_peers_flag(start):
    """A rank whose peer has not raised this call's flag (the flag still holds the last call's epoch, or nothing
    yet) keeps waiting, also where the epochs wrap; once the flag is raised it finishes with the peer's rows."""
    import multiprocessing

    data, flags, peers = group_buffers(2, torch.float16, "cpu", shared=True, start=start)
    parts, residual, weight = inputs(2, 1, 64, torch.float16, "cpu", seed=3)
    epoch = next_epoch(start)
    data[0][epoch % 2, 1, 0, :64] = parts[1][0]
    flags[0][1, 0] = start  # the peer's flag from the last call (0: none yet)
    out = torch.zeros(1, 64, dtype=torch.float16).share_memory_()
    proc = multiprocessing.get_context("fork").Process(target=_one_call, args=(peers, parts, residual, weight, out),
                                                       daemon=True)
    proc.start()
    proc.join(timeout=3)
    still_waiting = proc.is_alive()
    flags[0][1, 0] = epoch
    proc.join(timeout=60)
    if proc.is_alive():
        proc.kill()
    assert still_waiting, "the rank went on before its peer's flag was raised"
    assert proc.exitcode == 0
    assert torch.equal(out, expected(parts, residual, weight, 1e-5)[1])
    assert int(flags[1][0, 0]) == epoch  # and raised its own in the peer's flags


def test_supports(device):
    _, _, peers = group_buffers(2, torch.float32, device)
    ok = torch.zeros(MAX_ROWS, ROW_STRIDE, device=device)
    assert push_all_reduce_supports(ok, peers[0])
    assert push_all_reduce_supports(ok[0], peers[0])  # one row, 1-D
    assert push_all_reduce_supports(torch.zeros(2, 3, 40, device=device), peers[0])  # rows = 6
    assert not push_all_reduce_supports(torch.zeros(MAX_ROWS + 1, 16, device=device), peers[0])
    assert not push_all_reduce_supports(torch.zeros(1, ROW_STRIDE + 1, device=device), peers[0])
    assert not push_all_reduce_supports(torch.zeros(0, 16, device=device), peers[0])
    assert not push_all_reduce_supports(ok[:, ::2], peers[0])  # strided rows


@pytest.mark.skipif(not torch.cuda.is_available(), reason="occupancy is a GPU's")
def test_learns_how_many_programs_an_sm_holds():
    """After a variant's first launch its grid may grow to as many programs as an SM holds together (registers,
    threads, shared memory), and the sums stay the unfused path's."""
    module = importlib.import_module("spmd_kernels.push_all_reduce")  # the package's name for it is the function

    world, rank = 2, 0
    data, flags, peers = group_buffers(world, torch.float16, "cuda")
    for call in range(2):
        parts, residual, weight = inputs(world, 3, 160, torch.float16, "cuda", seed=50 + call)
        for row in range(3):
            e = next_epoch(int(peers[rank].epochs[row]))
            data[rank][e % 2, 1, row, :160] = parts[1][row]
            flags[rank][1, row] = e
        got = push_all_reduce(parts[rank], peers[rank], residual, weight, 1e-6)
        _, y, h = expected(parts, residual, weight, 1e-6)
        assert torch.equal(got[0], y) and torch.equal(got[1], h)
    learned = [v for k, v in module._RESIDENT.items() if k[0].type == "cuda" and k[3] and k[7] == torch.float16]
    assert learned and all(1 <= v <= module.MAX_BLOCKS_PER_SM for v in learned), module._RESIDENT


_SM90_CENSUS = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
from ptx_census import compile_census
kernel = importlib.import_module("spmd_kernels.push_all_reduce")._push_kernel
pointers = {"x_ptr": "*bf16", "keep_ptr": "*u8", "data_ptrs": "*i64", "flag_ptrs": "*i64", "epoch_ptr": "*i32",
            "res_ptr": "*bf16", "w_ptr": "*bf16", "y_ptr": "*bf16", "h_ptr": "*bf16", "kept_ptr": "*u8", "eps": "fp32"}
found = {}
for mode, row_stride in ((0, 4096), (0, 33), (1, 4096), (2, 4096)):
    consts = {"WORLD": 2, "MAX_ROWS": 256, "ROW_STRIDE": row_stride, "MODE": mode, "GROUP": 1, "NORM": mode != 1,
              "TOKEN_VALID": mode == 1, "BLOCK_H": 4096, "PDL": True}
    ptx = compile_census(kernel, pointers, consts, ("M", "count", "rank"), 16, 1)[2]
    found[f"{mode},{row_stride}"] = {k: k in ptx for k in (
        "atom.global.sys.release.exch.b32", "ld.global.sys.acquire.b32", "atom.global.sys.acquire",
        "ld.global.cg.v4.b32", "st.global.b16")}
print(json.dumps(found))
"""


def test_compiled_for_sm90_it_moves_16_bytes_and_orders_at_system_scope():
    """The kernel as the GPU would run it (compiled offline for sm_90 in a process without the interpreter; no GPU
    needed), all-reducing, gathering and reduce-scattering: peer rows move 16 bytes an instruction (the slots'
    alignment hint), flags are written with release and read with acquire semantics at system scope (what makes the
    rows visible across GPUs before the flag), and slots of an odd width fall back to 2 bytes."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    proc = subprocess.run([sys.executable, "-c", _SM90_CENSUS, str(REPO / "tests" / "gpu")], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    for variant, seen in found.items():
        assert seen["atom.global.sys.release.exch.b32"], (variant, seen)
        assert seen["ld.global.sys.acquire.b32"] or seen["atom.global.sys.acquire"], (variant, seen)
        wide = not variant.endswith(",33")
        assert (seen["ld.global.cg.v4.b32"] and not seen["st.global.b16"]) == wide, (variant, seen)
