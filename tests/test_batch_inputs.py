"""Packing a scheduled batch on the host (vectorised) and loading it into the CUDA-graph static buffers."""

from __future__ import annotations

import numpy as np
import torch

from spmd_infer.data.request import Request
from spmd_infer.engine.batch_inputs import pack_batch
from spmd_infer.engine.cuda_graphs import DecodeGraphs
from spmd_infer.engine.scheduler import ScheduledBatch
from spmd_infer.engine.sequence import Sequence
from spmd_infer.parallel.dp_meta import DPMeta, Phase, make_row
from spmd_infer.sampling_params import SamplingParams

BLOCK = 4


def _seq(index: int, tokens: list[int], computed: int, blocks: list[int]) -> Sequence:
    seq = Sequence(Request(index=index, id=index, prompt_token_ids=tokens, sampling=SamplingParams()))
    seq.num_computed, seq.block_table = computed, blocks
    return seq


def _reference(batch: ScheduledBatch):
    """The obvious per-token loops the vectorised packing replaces."""
    ids, pos, slots, cu, ctx, logits = [], [], [], [0], [], []
    for seq, n, sampled in zip(batch.seqs, batch.num_new_tokens, batch.sampled):
        for p in range(seq.num_computed, seq.num_computed + n):
            ids.append(seq.token_ids[p])
            pos.append(p)
            slots.append(seq.block_table[p // BLOCK] * BLOCK + p % BLOCK)
        cu.append(cu[-1] + n)
        ctx.append(seq.num_computed + n)
        if sampled:
            logits.append(cu[-1] - 1)
    return ids, pos, slots, cu, ctx, logits


def test_prefill_chunks_and_cached_prefixes_pack_like_per_token_loops():
    batch = ScheduledBatch(Phase.PREFILL)
    batch.add(_seq(0, list(range(100, 111)), 0, [7, 3, 9]), 11)  # whole prompt, 3 blocks
    batch.add(_seq(1, list(range(200, 213)), 8, [1, 2, 5, 6]), 3)  # cached prefix of 8, a middle chunk
    batch.add(_seq(2, [5, 6], 1, [4]), 1)  # last token after a one-token prefix
    host = pack_batch(batch, BLOCK, use_cache=True)
    ids, pos, slots, cu, ctx, logits = _reference(batch)
    assert host.input_ids.tolist() == ids and host.positions.tolist() == pos
    assert host.slot_mapping.tolist() == slots and host.cu_seqlens_q.tolist() == cu
    assert host.context_lens.tolist() == ctx and host.logits_indices.tolist() == logits == [10, 14]
    assert host.block_tables.tolist() == [[7, 3, 9, -1], [1, 2, 5, 6], [4, -1, -1, -1]]
    assert (host.max_query_len, host.max_context_len) == (11, 11)
    assert pack_batch(batch, BLOCK, use_cache=False).slot_mapping is None


def test_prompt_rows_score_each_prompt_token_once_across_chunks_and_recomputes():
    def scored(computed: int, recorded: int) -> Sequence:
        seq = Sequence(Request(index=0, id=0, prompt_token_ids=list(range(50, 60)),
                               sampling=SamplingParams(prompt_logprobs=2)))
        seq.num_computed, seq.prompt_logprobs = computed, [None] + [{}] * (recorded - 1)
        return seq

    batch = ScheduledBatch(Phase.PREFILL)
    batch.add(_seq(1, [7, 8, 9], 0, [1]), 3)  # asks for nothing
    batch.add(scored(0, 1), 4)  # first chunk: positions 0..3 give entries 1..4
    batch.add(scored(4, 5), 6)  # last chunk: positions 4..8 give entries 5..9; position 9 predicts no prompt token
    batch.add(scored(0, 7), 10)  # a recompute after preemption: entries 1..6 are kept, 7..9 still to score
    rows = pack_batch(batch, BLOCK, use_cache=False).prompt_rows
    assert rows.counts == [(1, 1, 4), (2, 5, 5), (3, 7, 3)] and rows.top_k == 2
    assert rows.rows.tolist() == [3, 4, 5, 6] + [7, 8, 9, 10, 11] + [19, 20, 21]
    assert rows.targets.tolist() == [51, 52, 53, 54] + [55, 56, 57, 58, 59] + [57, 58, 59]
    done = scored(0, 10)
    assert not done.needs_prompt_logprobs  # fully scored: its recompute may use the prefix cache again
    decode = ScheduledBatch(Phase.DECODE)
    decode.add(_seq(0, [1, 2], 1, [3]), 1)
    assert pack_batch(decode, BLOCK, use_cache=False).prompt_rows is None


def test_decode_batch_loads_into_a_bucket_with_padding_rows():
    batch = ScheduledBatch(Phase.DECODE)
    seqs = [_seq(0, [1, 2, 3, 4, 5], 4, [2, 8]), _seq(1, [9, 8, 7], 2, [5])]
    for s in seqs:
        batch.add(s, 1)
    host = pack_batch(batch, BLOCK, use_cache=True)
    ids, pos, slots, cu, ctx, _ = _reference(batch)
    assert host.input_ids.tolist() == ids == [5, 7] and host.slot_mapping.tolist() == slots == [32, 22]

    graphs = DecodeGraphs([1, 2, 4], max_blocks_per_seq=3, device=torch.device("cpu"))
    graphs.inputs.block_tables.fill_(99)  # stale rows of an earlier, larger step
    meta = DPMeta(rows=torch.stack([make_row(num_tokens=2, num_seqs=2)]), dp_rank=0)
    fb = graphs.load(host, bucket=4, meta=meta)
    assert fb.num_seqs == 4 and not fb.is_prefill
    assert fb.input_ids.tolist() == [5, 7, 0, 0] and fb.positions.tolist() == [4, 2, 0, 0]
    assert fb.slot_mapping.tolist() == [32, 22, -1, -1]  # padding rows own no cache slot
    assert fb.context_lens.tolist() == [5, 3, 1, 1]
    assert fb.decode_order.tolist() == [0, 1, 2, 3]  # longest context first, ties (padding) in batch order
    # Columns past the widest table in use keep stale values: no kernel reads past a row's context.
    assert fb.block_tables[:, :2].tolist() == [[2, 8], [5, 0], [0, 0], [0, 0]]
    assert fb.token_valid.tolist() == [True, True, False, False]
    assert fb.cu_seqlens_q.tolist() == [0, 1, 2, 3, 4] and fb.logits_indices.tolist() == [0, 1, 2, 3]
    # A smaller step next: the rows past it become padding again.
    small = ScheduledBatch(Phase.DECODE)
    small.add(seqs[1], 1)
    fb = graphs.load(pack_batch(small, BLOCK, use_cache=True), bucket=2, meta=meta)
    assert fb.slot_mapping.tolist() == [22, -1] and fb.block_tables[:, :1].tolist() == [[5], [0]]
    assert np.array_equal(fb.token_valid.numpy(), [True, False])
    assert fb.context_lens.tolist() == [3, 1] and fb.decode_order.tolist() == [0, 1]
    # Shorter first in the batch: the order puts the longer one first; an idle rank's padding is a permutation too.
    swapped = ScheduledBatch(Phase.DECODE)
    for s in reversed(seqs):
        swapped.add(s, 1)
    fb = graphs.load(pack_batch(swapped, BLOCK, use_cache=True), bucket=4, meta=meta)
    assert fb.context_lens.tolist() == [3, 5, 1, 1] and fb.decode_order.tolist() == [1, 0, 2, 3]
    assert graphs.load_padding(2, meta).decode_order.tolist() == [0, 1]


def test_longest_first_is_a_stable_descending_order():
    from spmd_infer.engine.batch_inputs import longest_first

    order = longest_first(np.array([7, 300, 7, 1, 300, 40], dtype=np.int32))
    assert order.dtype == np.int32 and order.tolist() == [1, 4, 5, 0, 2, 3]
    assert longest_first(np.zeros(0, dtype=np.int32)).tolist() == []


def test_upload_packed_views_start_16_byte_aligned_whatever_the_sizes():
    """Kernels specialise on 16-byte pointer alignment: a view's alignment must not follow the batch's sizes."""
    from spmd_infer.host_memory import upload_packed

    for dtype in (np.int64, np.int32):
        for sizes in ([1, 1, 1], [3, 5, 2, 7], [0, 4, 9], [1025, 1025, 1]):
            parts = [np.arange(n, dtype=dtype) + 100 * i for i, n in enumerate(sizes)]
            views = upload_packed(parts, dtype, torch.device("cpu"))
            base = views[0].data_ptr()
            assert [(v.data_ptr() - base) % 16 for v in views] == [0] * len(views)
            assert [v.tolist() for v in views] == [p.tolist() for p in parts]
