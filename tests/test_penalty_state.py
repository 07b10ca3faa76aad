"""Penalty counts kept on the device (engine/penalty_state.py): rows built from token ids, kept current by the sampled
tokens, lent between sequences and rebuilt, against the rules applied to each sequence's token list."""

from __future__ import annotations

import random

import pytest
import torch

from spmd_infer.data.request import Request
from spmd_infer.engine.penalty_state import MIN_ROWS, PenaltyState
from spmd_infer.engine.sequence import PLACEHOLDER, Sequence, SeqStatus
from spmd_infer.sampling_params import InvalidRequest, SamplingParams

VOCAB = 40


def _seq(index: int, prompt: list[int], **penalties) -> Sequence:
    return Sequence(Request(index=index, id=index, prompt_token_ids=prompt,
                            sampling=SamplingParams(temperature=0.0, **penalties)))


def _expected(logits: torch.Tensor, seqs: list[Sequence]) -> torch.Tensor:
    """Each row penalized from its sequence's token list, as the rules read."""
    out = logits.clone()
    for i, s in enumerate(seqs):
        p = s.sampling
        for token in set(s.token_ids):
            x = out[i, token]
            out[i, token] = x / p.repetition_penalty if x > 0 else x * p.repetition_penalty
        outputs = s.output_ids
        for token in set(outputs):
            out[i, token] -= p.presence_penalty + p.frequency_penalty * outputs.count(token)
    return out


def _step(state: PenaltyState, seqs: list[Sequence], rng: random.Random) -> None:
    """One sampling step: penalties checked against the rules, then a token drawn for each sequence and counted."""
    logits = torch.randn(len(seqs), VOCAB) * 3
    step = state.prepare(seqs, VOCAB)
    if step is None:
        assert not any(s.sampling.penalizes for s in seqs)
        return
    got = logits.clone()
    state.apply(got, step)
    assert torch.equal(got, _expected(logits, seqs))
    tokens = torch.tensor([rng.randrange(VOCAB) for _ in seqs])
    state.record(step, tokens)
    for s, t in zip(seqs, tokens.tolist()):
        s.token_ids.append(t)


def test_counts_follow_the_tokens_across_steps():
    rng = random.Random(0)
    seqs = [_seq(0, [3, 3, 5], repetition_penalty=1.3), _seq(1, [7], presence_penalty=0.5, frequency_penalty=0.7),
            _seq(2, [1, 2]), _seq(3, [9, 9, 9], repetition_penalty=0.8, frequency_penalty=-1.0)]
    state = PenaltyState(torch.device("cpu"))
    for _ in range(12):
        _step(state, seqs, rng)
    assert state.num_rows == MIN_ROWS  # three penalized sequences: no growth
    # A batch of unpenalized sequences needs nothing.
    assert state.prepare([seqs[2]], VOCAB) is None


def test_rows_are_lent_rebuilt_and_grown():
    """More penalized sequences than rows: finished sequences' rows are reused, idle ones lent and rebuilt later
    from the token ids, and a batch larger than the table grows it."""
    rng = random.Random(1)
    pool = [_seq(i, [rng.randrange(VOCAB) for _ in range(rng.randrange(1, 6))], repetition_penalty=1.2,
                 frequency_penalty=0.3) for i in range(3 * MIN_ROWS)]
    state = PenaltyState(torch.device("cpu"))
    for step in range(30):
        batch = rng.sample(pool, rng.randrange(1, MIN_ROWS + 1))
        _step(state, batch, rng)
        if step % 7 == 6:
            done = rng.choice(pool)
            done.status = SeqStatus.FINISHED
            pool.remove(done)
    assert state.num_rows == MIN_ROWS, "batches within the table lend rows instead of growing it"
    _step(state, pool[:MIN_ROWS + 3], rng)
    assert state.num_rows == 2 * MIN_ROWS
    _step(state, pool, rng)  # every remaining sequence at once: rows rebuilt wherever they were lent away


def test_a_finished_sequence_in_the_batch_keeps_its_row():
    """With steps in flight a sequence may be found finished and still draw its discarded token in this step: its
    row is not lent to a new sequence of the same batch (that one gets another row, counted apart)."""
    rng = random.Random(2)
    state = PenaltyState(torch.device("cpu"))
    seqs = [_seq(i, [i, i + 1], frequency_penalty=0.5) for i in range(MIN_ROWS)]
    _step(state, seqs, rng)
    seqs[0].status = SeqStatus.FINISHED
    newcomer = _seq(99, [5, 5], repetition_penalty=1.5)
    _step(state, seqs + [newcomer], rng)
    assert state.num_rows == 2 * MIN_ROWS
    _step(state, seqs[1:] + [newcomer], rng)  # the newcomer's counts hold its own tokens only


def test_a_rebuild_with_a_token_in_flight_is_refused():
    state = PenaltyState(torch.device("cpu"))
    seq = _seq(0, [1, 2], repetition_penalty=1.1)
    seq.token_ids.append(PLACEHOLDER)
    with pytest.raises(RuntimeError, match="still on the device"):
        state.prepare([seq], VOCAB)


def test_penalty_ranges():
    for field, value in [("presence_penalty", 2.5), ("frequency_penalty", -3)]:
        with pytest.raises(InvalidRequest, match=f"{field} must be in \\[-2, 2\\]"):
            SamplingParams().with_overrides({field: value})
    assert SamplingParams().with_overrides({"frequency_penalty": -2, "presence_penalty": 2}).penalizes


def test_sampler_warmup_runs_every_path():
    """The startup pass over the sampler (CUDA: it compiles the kernels there) runs on any device."""
    from torch import nn

    from spmd_infer.engine.sampler_warmup import warm_sampler
    from spmd_infer.layers.embed_head import ParallelLMHead
    from spmd_infer.parallel.comm import Shard

    head = ParallelLMHead(VOCAB, 8, Shard())
    warm_sampler(nn.ModuleList([head]), VOCAB - 3, torch.float32, torch.device("cpu"), max_rows=MIN_ROWS + 3)
