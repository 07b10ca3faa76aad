"""Per-sequence token counts on the device for the repetition, presence and frequency penalties.

A penalized sequence owns a row of vocabulary-wide counts (kernels/penalties.py's layout: a prompt bit and the
output count per token). The row is built once from the sequence's token ids and then kept current on the device:
each step adds the token it sampled there, before the host knows it. So a penalty costs one pass over the logits
and no per-sequence work on the host, and penalized sequences may leave their tokens in flight (overlapped steps)
like any other.

Rows are lent, not kept for life: a sequence outside the current batch may lose its row to one inside it, and
rebuilds it from its token ids when next sampled. That is always possible then, because a token is in flight only
for the step after the one that sampled it, and a sequence that was not in this batch is sampled again at the
earliest in the step after next, when the tokens of this step's predecessor have been settled on the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from spmd_kernels import apply_penalties, apply_penalties_ref
from spmd_kernels.penalties import PROMPT_BIT

from ..host_memory import upload_packed, upload_typed
from .sequence import PLACEHOLDER, Sequence, SeqStatus

MIN_ROWS = 8


@dataclass
class StepPenalties:
    """One step's sampled rows: each row's count row (-1: no penalty) and penalties, on the device."""

    rows: torch.Tensor  # [S] int64
    repetition: torch.Tensor  # [S] float32
    presence: torch.Tensor  # [S] float32
    frequency: torch.Tensor  # [S] float32


class PenaltyState:
    """Count rows of the sequences a rank samples with penalties (allocated at the first such sequence)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.counts: Optional[torch.Tensor] = None  # [rows, vocab] int32
        self._owner: list[Optional[Sequence]] = []
        self._row_of: dict[int, int] = {}  # id(sequence) -> row; the owner list keeps the sequence alive
        self._last_used: list[int] = []
        self._step = 0

    @property
    def num_rows(self) -> int:
        return len(self._owner)

    def prepare(self, seqs: list[Sequence], vocab: int) -> Optional[StepPenalties]:
        """The rows of `seqs` (one per sampled logits row), building the missing ones; None if none penalizes."""
        if not any(s.sampling.penalizes for s in seqs):
            return None
        self._step += 1
        if self.counts is None or self.counts.shape[1] != vocab:
            self._reset(vocab)
        in_batch = {id(s) for s in seqs}
        rows, built = [], []
        for s in seqs:
            if not s.sampling.penalizes:
                rows.append(-1)
                continue
            row = self._row_of.get(id(s))
            if row is None:
                row = self._lend(s, in_batch)
                built.append((row, s))
            self._last_used[row] = self._step
            rows.append(row)
        if built:
            self._build(built)
        # One copy of typed views, as SamplingTensors.build's: no conversion kernels on the device.
        penalties = np.array([[s.sampling.repetition_penalty, s.sampling.presence_penalty,
                               s.sampling.frequency_penalty] for s in seqs], dtype=np.float32).T
        rows_dev, repetition, presence, frequency = upload_typed(
            [np.asarray(rows, dtype=np.int64), penalties[0], penalties[1], penalties[2]], self.device)
        return StepPenalties(rows=rows_dev, repetition=repetition, presence=presence, frequency=frequency)

    def apply(self, logits: torch.Tensor, step: StepPenalties) -> None:
        """The penalties, in place on float32 logits [S, V]."""
        penalize = apply_penalties if logits.is_cuda else apply_penalties_ref
        penalize(logits, step.rows, self.counts, step.repetition, step.presence, step.frequency)

    def record(self, step: StepPenalties, tokens: torch.Tensor) -> None:
        """Count each penalized row's sampled token ([S] on the device), without waiting for it."""
        assert self.counts is not None
        on = step.rows >= 0
        self.counts.index_put_((step.rows.clamp(min=0), tokens), on.to(torch.int32), accumulate=True)

    # ---- rows ---------------------------------------------------------------------------------------------------
    def _reset(self, vocab: int) -> None:
        self.counts = torch.zeros((MIN_ROWS, vocab), dtype=torch.int32, device=self.device)
        self._owner = [None] * MIN_ROWS
        self._last_used = [0] * MIN_ROWS
        self._row_of.clear()

    def _lend(self, seq: Sequence, in_batch: set[int]) -> int:
        """A row for `seq`: a free one, else a finished sequence's, else the least recently used row of a sequence
        outside this batch, else a new one (the table doubles). Never a row of this batch: with steps in flight a
        sequence found finished may still draw its one discarded token here, and count it in its row."""
        outside = [r for r, s in enumerate(self._owner) if id(s) not in in_batch]
        free = [r for r in outside if self._owner[r] is None or self._owner[r].status is SeqStatus.FINISHED]
        if not free:
            free = sorted(outside, key=self._last_used.__getitem__)[:1]
        if not free:
            free = [self._grow()]
        row = free[0]
        old = self._owner[row]
        if old is not None:
            del self._row_of[id(old)]
        self._owner[row] = seq
        self._row_of[id(seq)] = row
        return row

    def _grow(self) -> int:
        assert self.counts is not None
        old = self.counts.shape[0]
        grown = torch.zeros((2 * old, self.counts.shape[1]), dtype=torch.int32, device=self.device)
        grown[:old] = self.counts
        self.counts = grown
        self._owner += [None] * old
        self._last_used += [0] * old
        return old

    def _build(self, built: list[tuple[int, Sequence]]) -> None:
        """Rows from the sequences' token ids, in one copy to the device: prompt bits, then output counts."""
        assert self.counts is not None
        prompt_rows, prompt_ids, output_rows, output_ids = [], [], [], []
        for row, s in built:
            if PLACEHOLDER in s.token_ids:
                raise RuntimeError(f"penalty counts rebuilt for request {s.id!r} while one of its tokens is still "
                                   "on the device; this is a bug in spmd-infer's overlapped steps")
            n = s.num_prompt_tokens
            prompt_ids.append(np.asarray(s.token_ids[:n], dtype=np.int64))
            output_ids.append(np.asarray(s.token_ids[n:], dtype=np.int64))
            prompt_rows.append(np.full(n, row, dtype=np.int64))
            output_rows.append(np.full(len(s.token_ids) - n, row, dtype=np.int64))
        fresh, p_rows, p_ids, o_rows, o_ids = upload_packed(
            [np.array([r for r, _ in built], dtype=np.int64), np.concatenate(prompt_rows), np.concatenate(prompt_ids),
             np.concatenate(output_rows), np.concatenate(output_ids)], np.int64, self.device)
        self.counts.index_fill_(0, fresh, 0)
        self.counts.index_put_((p_rows, p_ids), torch.full_like(p_ids, PROMPT_BIT, dtype=torch.int32))
        self.counts.index_put_((o_rows, o_ids), torch.ones_like(o_ids, dtype=torch.int32), accumulate=True)
