"""CUDA-graph bucket logic without a GPU: bucket sizes, and which bucket a step replays in each DP mode."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from spmd_infer.engine.cuda_graphs import graph_buckets, pick_bucket
from spmd_infer.engine.scheduler import ScheduledBatch
from spmd_infer.engine.step import Stepper
from spmd_infer.parallel.dp_meta import DPMeta, Phase, make_row


def test_buckets_cover_every_batch_size_with_little_padding():
    buckets = graph_buckets(256)
    assert buckets[:5] == [1, 2, 4, 8, 16] and buckets[-1] == 256
    for n in range(1, 257):
        b = pick_bucket(buckets, n)
        assert b >= n and b - n < 16
    assert pick_bucket(buckets, 257) is None
    assert graph_buckets(3) == [1, 2, 3]


class _Graphs:
    buckets = graph_buckets(64)
    max_batch = 64

    def bucket_for(self, n):
        return pick_bucket(self.buckets, max(n, 1))


def _meta(rows, dp_rank=0):
    return DPMeta(rows=torch.stack([make_row(**r) for r in rows]), dp_rank=dp_rank)


def _stepper(dp_attention):
    runner = SimpleNamespace(graphs=_Graphs())
    return Stepper(runner, exchange=None, dp_attention=dp_attention, capacity=1)


def _decode(n):
    b = ScheduledBatch(Phase.DECODE)
    b.seqs, b.num_new_tokens, b.sampled = [object()] * n, [1] * n, [True] * n
    return b


def test_dp_attention_replays_the_bucket_of_the_largest_dp_batch():
    meta = _meta([dict(num_tokens=3, num_seqs=3, can_graph=1), dict(num_tokens=20, num_seqs=20, can_graph=1)])
    assert _stepper(True)._graph_bucket(_decode(3), meta) == 32
    # An idle DP rank joins the same graph with padding rows.
    idle = _meta([dict(can_graph=1), dict(num_tokens=5, num_seqs=5, can_graph=1)])
    assert _stepper(True)._graph_bucket(ScheduledBatch(Phase.IDLE), idle) == 8


def test_dp_attention_runs_eager_everywhere_when_one_rank_cannot_graph():
    meta = _meta([dict(num_tokens=3, num_seqs=3, can_graph=1), dict(num_tokens=100, num_seqs=2, can_graph=0)])
    assert _stepper(True)._graph_bucket(_decode(3), meta) is None


def test_decoupled_ranks_pick_their_own_bucket():
    meta = _meta([dict(num_tokens=3, num_seqs=3, can_graph=1), dict(num_tokens=100, num_seqs=2, can_graph=0)])
    assert _stepper(False)._graph_bucket(_decode(3), meta) == 4
    meta_other = _meta([dict(num_tokens=100, num_seqs=2, can_graph=0), dict(num_tokens=3, num_seqs=3, can_graph=1)])
    assert _stepper(False)._graph_bucket(_decode(2), meta_other) is None
