"""Block allocation and prefix caching: sharing, reference counts, eviction, preemption."""

from __future__ import annotations

from spmd_infer.data.request import Request
from spmd_infer.engine.block_manager import BlockManager
from spmd_infer.engine.sequence import Sequence
from spmd_infer.sampling_params import SamplingParams


def _seq(tokens, index=0):
    return Sequence(Request(index=index, id=index, prompt_token_ids=list(tokens), sampling=SamplingParams()))


def _prefill(bm: BlockManager, seq: Sequence) -> None:
    bm.match_prefix(seq)
    bm.allocate(seq, seq.num_uncomputed)
    seq.num_computed = len(seq)
    bm.register_full_blocks(seq)


def test_shared_prefix_reuses_full_blocks_but_never_the_last_token():
    bm = BlockManager(num_blocks=16, block_size=4, prefix_caching=True)
    a = _seq(range(10))
    _prefill(bm, a)
    b = _seq(list(range(8)) + [99, 98, 97])
    assert bm.match_prefix(b) == 8 and b.block_table == a.block_table[:2]
    assert bm.ref_count[a.block_table[0]] == 2
    exact = _seq(range(8))  # all of it cached, but its last token must still run
    assert bm.match_prefix(exact) == 4


def test_freed_blocks_stay_cached_until_reused_then_are_forgotten():
    bm = BlockManager(num_blocks=4, block_size=4, prefix_caching=True)
    a = _seq(range(9))
    _prefill(bm, a)
    bm.release(a)
    assert bm.num_free == 4
    b = _seq(range(9))
    assert bm.match_prefix(b) == 8  # served after a was freed
    bm.release(b)
    c = _seq(range(100, 116))
    bm.allocate(c, 16)  # takes every block, evicting a's contents
    assert bm.match_prefix(_seq(range(9))) == 0


def test_unmatch_returns_blocks_and_different_parents_do_not_alias():
    bm = BlockManager(num_blocks=8, block_size=2, prefix_caching=True)
    a = _seq([1, 2, 3, 4, 5])
    _prefill(bm, a)
    other = _seq([9, 9, 3, 4, 5])  # block [3, 4] after a different first block
    assert bm.match_prefix(other) == 0
    b = _seq([1, 2, 3, 4, 7])
    free_before = bm.num_free
    assert bm.match_prefix(b) == 4
    bm.unmatch(b)
    assert bm.num_free == free_before and b.num_computed == 0 and b.block_table == []


def test_prefix_caching_off_matches_nothing():
    bm = BlockManager(num_blocks=8, block_size=2, prefix_caching=False)
    a = _seq([1, 2, 3, 4, 5])
    _prefill(bm, a)
    assert bm.match_prefix(_seq([1, 2, 3, 4, 5])) == 0
