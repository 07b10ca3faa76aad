"""Decode batches ordered longest context first (SPMD_DECODE_LONGEST_FIRST): the scheduler's order, and a whole job
whose tokens do not change with it.

Whether it pays is a GPU question (tests/gpu/run_nano_decode_tiles.sh times it): the order only decides which
decode-attention programs the GPU starts last.
"""

from __future__ import annotations

import pytest

from spmd_infer.data.request import Request
from spmd_infer.engine import scheduler as scheduler_module
from spmd_infer.engine.block_manager import BlockManager
from spmd_infer.engine.scheduler import Scheduler
from spmd_infer.engine.sequence import Sequence
from spmd_infer.parallel.dp_meta import Phase
from spmd_infer.sampling_params import SamplingParams
from support.tiny_models import MAX_NEW, read_output


def _running(prompt_lens: list[int]) -> tuple[Scheduler, list[Sequence]]:
    """A scheduler whose sequences (admitted in prompt_lens' order) are prefilled and each hold a sampled token."""
    sched = Scheduler(BlockManager(64, 4), max_num_seqs=8, max_num_batched_tokens=256)
    seqs = [Sequence(Request(index=i, id=i, prompt_token_ids=list(range(1, n + 1)), sampling=SamplingParams()))
            for i, n in enumerate(prompt_lens)]
    for seq in seqs:
        sched.add(seq)
    prefill = sched.schedule()
    assert prefill.phase is Phase.PREFILL and len(prefill.seqs) == len(seqs)
    sched.postprocess(prefill)
    for seq in seqs:
        seq.token_ids.append(7)  # the token the prefill sampled
    return sched, seqs


@pytest.mark.parametrize("longest_first", [False, True])
def test_decode_batch_order(longest_first, monkeypatch):
    monkeypatch.setattr(scheduler_module, "DECODE_LONGEST_FIRST", longest_first)
    sched, seqs = _running([3, 20, 7, 12, 7])
    decode = sched.schedule()
    assert decode.phase is Phase.DECODE and decode.num_new_tokens == [1] * 5 and all(decode.sampled)
    lens = [s.num_computed for s in decode.seqs]
    if longest_first:  # equal lengths keep their admission order (a stable sort)
        assert lens == [20, 12, 7, 7, 3] and decode.seqs[2] is seqs[2] and decode.seqs[3] is seqs[4]
    else:
        assert decode.seqs == seqs


def test_a_job_decoding_longest_first_gives_the_same_tokens(job, tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(scheduler_module, "DECODE_LONGEST_FIRST", True)
    orders = []
    schedule = Scheduler._schedule_decode

    def recorded(self):
        batch = schedule(self)
        orders.append([s.num_computed for s in batch.seqs])
        return batch

    monkeypatch.setattr(Scheduler, "_schedule_decode", recorded)
    job(f"data.input={tiny['inputs']['mixed']}", f"sampling.max_tokens={MAX_NEW}", "scheduler.max_num_seqs=6")
    assert [r["token_ids"] for r in read_output(tmp_path / "out.jsonl")] == tiny["refs"][("llama", "mixed")]
    # Mixed prompt lengths: some decode batch held several lengths, and came longest first.
    assert any(len(set(o)) > 1 for o in orders) and all(o == sorted(o, reverse=True) for o in orders)
