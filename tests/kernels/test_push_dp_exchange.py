"""kernels/push_dp_exchange.py against its references: the ranks' buffers are tensors of this process (shared with
forked ranks on the CPU), their addresses in the pointer tables as symmetric memory would give them. Across real
GPUs: tests/test_dp_exchange.py."""

import pytest
import torch
from test_push_all_reduce import MAX_ROWS, ROW_STRIDE, STARTS, group_buffers, next_epoch, run_forked_ranks

from spmd_kernels.push_dp_exchange import (push_all_gather, push_all_gather_ref, push_exchange_supports,
                                           push_reduce_scatter, push_reduce_scatter_ref)
from spmd_kernels.rmsnorm import rms_norm


def gather_inputs(counts: list[int], width: int, dtype, device, seed: int, marks: bool):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(n, width, generator=g).to(dtype).to(device) for n in counts]
    valid = [(torch.rand(n, generator=g) > 0.3).to(device) for n in counts] if marks else None
    return xs, valid


def scatter_inputs(world: int, group: int, rows: int, count: int, width: int, dtype, device, seed: int):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(world // group * rows, width, generator=g).to(dtype).to(device) for _ in range(world)]
    residual = torch.randn(count, width, generator=g).to(dtype).to(device)
    weight = (1.0 + 0.1 * torch.randn(width, generator=g)).to(dtype).to(device)
    return xs, residual, weight


def scatter_expected(xs, rank, group, count, residual, weight, eps):
    """The unfused path's bits: the reference sum, then the RMSNorm kernel for y and the reference's exact h."""
    total = push_reduce_scatter_ref(xs, rank, group, count)
    y, h = rms_norm(total, weight, eps, residual)
    assert torch.equal(h, push_reduce_scatter_ref(xs, rank, group, count, residual, weight, eps)[1])
    return total, y, h


@pytest.mark.parametrize("start", STARTS)
@pytest.mark.parametrize("world,rank", [(2, 1), (3, 0)])
def test_gather_against_pushed_peers(world, rank, start, dtype, device):
    """One rank's gather, its peers' pushes (rows, then their marks) made by hand in its slots: it lays every rank's
    rows side by side with zeros past each count, marks the real ones, pushes its own rows and marks to each peer
    and raises their flags, call after call (across the epochs' wrap too)."""
    data, flags, peers = group_buffers(world, dtype, device, start=start)
    for call, (counts, width, marks) in enumerate([([3, 1, 2], 160, False), ([1, 4, 4], 100, True),
                                                   ([2, 2, 2], 64, True)]):
        counts = counts[:world]
        rows = max(counts)
        xs, valid = gather_inputs(counts, width, dtype, device, seed=call, marks=marks)
        want_y, want_kept = push_all_gather_ref(xs, rows, valid)
        for src in range(world):
            if src != rank:
                for row in range(rows):
                    e = next_epoch(int(peers[rank].epochs[row]))
                    data[rank][e % 2, src, row, :width] = want_y[src * rows + row]
                    flags[rank][world + (e % 2) * world + src, row] = int(want_kept[src * rows + row])
                    flags[rank][src, row] = e
        y, kept = push_all_gather(xs[rank], peers[rank], rows, valid[rank] if marks else None)
        assert torch.equal(y, want_y) and torch.equal(kept, want_kept), f"call {call}"
        for peer in range(world):
            if peer != rank:
                for row in range(rows):
                    e = int(peers[rank].epochs[row])
                    assert torch.equal(data[peer][e % 2, rank, row, :width], want_y[rank * rows + row])
                    assert int(flags[peer][world + (e % 2) * world + rank, row]) == int(want_kept[rank * rows + row])
                    assert int(flags[peer][rank, row]) == e


@pytest.mark.parametrize("world,group,rank", [(2, 1, 0), (4, 2, 3), (3, 1, 2)])
def test_reduce_scatter_against_pushed_peers(world, group, rank, dtype, device):
    """One rank's reduce-scatter, its peers' pushes made by hand: it sums every rank's block for its group (rank //
    group) in rank order, ending in the norm or not, and pushes each peer its block."""
    data, flags, peers = group_buffers(world, dtype, device)
    for call, (rows, count, width) in enumerate([(3, 2, 160), (1, 1, 100), (4, 4, 64)]):
        xs, residual, weight = scatter_inputs(world, group, rows, count, width, dtype, device, seed=20 + call)
        for src in range(world):
            if src != rank:
                for row in range(rows):
                    e = next_epoch(int(peers[rank].epochs[row]))
                    data[rank][e % 2, src, row, :width] = xs[src][rank // group * rows + row]
                    flags[rank][src, row] = e
        norm = call % 2 == 0
        got = push_reduce_scatter(xs[rank], peers[rank], group, count, residual if norm else None,
                                  weight if norm else None, 1e-6)
        total, y, h = scatter_expected(xs, rank, group, count, residual, weight, 1e-6)
        if norm:
            assert torch.equal(got[0], y) and torch.equal(got[1], h), f"call {call}"
        else:
            assert torch.equal(got, total), f"call {call}"
        for peer in range(world):
            if peer != rank:
                for row in range(rows):
                    e = int(peers[rank].epochs[row])
                    assert torch.equal(data[peer][e % 2, rank, row, :width], xs[rank][peer // group * rows + row])
                    assert int(flags[peer][rank, row]) == e


# Per call: every DP rank's token count and whether CUDA graphs' padding marks ride along.
STEPS = [([3, 1], True), ([1, 1], False), ([2, 5], True), ([4, 4], False), ([1, 2], False)]


def _exchange_ranks(dp: int, tp: int, gather_peers, scatter_peers, calls, outs):
    """Each of the dp * tp ranks, forked: per call a gather over its DP group, then the reduce-scatter over all
    ranks, ending in the norm, as the decoder layer runs them; results into shared tensors."""
    def rank_main(rank):
        dp_rank, tp_rank = divmod(rank, tp)
        for call, (counts, marks, xs, valid, partials, residuals, weight) in enumerate(calls):
            y, kept = push_all_gather(xs[dp_rank], gather_peers[tp_rank][dp_rank], max(counts),
                                      valid[dp_rank] if marks else None)
            outs[rank][call][0].copy_(y)
            outs[rank][call][1].copy_(kept)
            got, h = push_reduce_scatter(partials[rank], scatter_peers[rank], tp, counts[dp_rank],
                                         residuals[dp_rank], weight, 1e-5)
            outs[rank][call][2][: counts[dp_rank]].copy_(got)
            outs[rank][call][3][: counts[dp_rank]].copy_(h)

    run_forked_ranks([(rank_main, (rank,)) for rank in range(dp * tp)], timeout=180)


@pytest.mark.skipif(torch.cuda.is_available(), reason="concurrent ranks are processes of the CPU interpreter; on GPUs "
                                                       "tests/test_dp_exchange.py runs them across two cards")
@pytest.mark.parametrize("dp,tp", [(2, 1), (2, 2), (3, 1)])
def test_ranks_exchange_concurrently(dp, tp):
    """Every rank at once, each waiting on the others' flags (the interpreter's atomics are the CPU's), over steps of
    changing token counts: every rank of a DP group gathers the same rows and marks, and gets its group's rows summed
    over all ranks in the same bits as the unfused path."""
    dtype, width, world = torch.float16, 96, dp * tp
    # Shared before the fork: every process then sees the same pages at the same addresses, as its pointer tables say.
    # (Each group's tensors kept: the pointer tables alone would not hold them.)
    gather_groups = [group_buffers(dp, dtype, "cpu", shared=True) for _ in range(tp)]  # a DP group a TP index
    scatter_group = group_buffers(world, dtype, "cpu", shared=True)
    gather_peers, scatter_peers = [g[2] for g in gather_groups], scatter_group[2]
    calls = []
    for i, (counts, marks) in enumerate(STEPS):
        counts = (counts * dp)[:dp]
        xs, valid = gather_inputs(counts, width, dtype, "cpu", seed=40 + i, marks=True)
        partials = scatter_inputs(world, tp, max(counts), 0, width, dtype, "cpu", seed=60 + i)[0]
        g = torch.Generator().manual_seed(80 + i)
        residuals = [torch.randn(n, width, generator=g).to(dtype) for n in counts]
        weight = (1.0 + 0.1 * torch.randn(width, generator=g)).to(dtype)
        calls.append((counts, marks, xs, valid, partials, residuals, weight))
    rows = [max(c[0]) for c in calls]
    def out_tensors(r: int) -> tuple:  # a call's gathered rows and marks, then the scatter's sums and residual
        made = (torch.zeros(dp * r, width, dtype=dtype), torch.zeros(dp * r, dtype=torch.bool),
                torch.zeros(r, width, dtype=dtype), torch.zeros(r, width, dtype=dtype))
        return tuple(t.share_memory_() for t in made)

    outs = [[out_tensors(r) for r in rows] for _ in range(world)]
    _exchange_ranks(dp, tp, gather_peers, scatter_peers, calls, outs)
    for call, (counts, marks, xs, valid, partials, residuals, weight) in enumerate(calls):
        want_y, want_kept = push_all_gather_ref(xs, max(counts), valid if marks else None)
        for rank in range(world):
            n = counts[rank // tp]
            _, y, h = scatter_expected(partials, rank, tp, n, residuals[rank // tp], weight, 1e-5)
            got_y, got_kept, got_norm, got_h = outs[rank][call]
            assert torch.equal(got_y, want_y) and torch.equal(got_kept, want_kept), (call, rank)
            assert torch.equal(got_norm[:n], y) and torch.equal(got_h[:n], h), (call, rank)


def test_supports(device):
    _, _, peers = group_buffers(2, torch.float32, device)
    assert push_exchange_supports(MAX_ROWS, ROW_STRIDE, peers[0])
    assert push_exchange_supports(1, 1, peers[0])
    assert not push_exchange_supports(MAX_ROWS + 1, 16, peers[0])
    assert not push_exchange_supports(1, ROW_STRIDE + 1, peers[0])
    assert not push_exchange_supports(0, 16, peers[0])
