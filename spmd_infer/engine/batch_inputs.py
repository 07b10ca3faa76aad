"""A scheduled batch packed into host arrays with vectorised numpy (no per-token Python work).

The step's host time sits between two GPU steps, so at decode it is pure overhead: the batch is
gathered from the sequences once per field, everything else (positions, cache slots, block tables,
logits rows) is array arithmetic, and the device gets it in a few copies instead of one per field.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Optional

import numpy as np

from ..parallel.dp_meta import Phase
from .scheduler import ScheduledBatch


@dataclass
class HostInputs:
    input_ids: np.ndarray  # [T] int64
    positions: np.ndarray  # [T] int64
    cu_seqlens_q: np.ndarray  # [B+1] int32
    context_lens: np.ndarray  # [B] int32, cached + new tokens after the step
    logits_indices: np.ndarray  # [S] int64, the last token of each sampled sequence
    slot_mapping: Optional[np.ndarray]  # [T] int64; None without a KV cache
    block_tables: Optional[np.ndarray]  # [B, W] int32, -1 padded; None without a KV cache
    max_query_len: int
    max_context_len: int
    prompt_rows: Optional["PromptRows"] = None  # prompt tokens to score (sampling.prompt_logprobs), if any

    @property
    def num_seqs(self) -> int:
        return len(self.context_lens)

    @property
    def num_tokens(self) -> int:
        return len(self.input_ids)


@dataclass
class PromptRows:
    """The rows of a prefill chunk whose logits score the next prompt token (sampling.prompt_logprobs)."""

    rows: np.ndarray  # [R] int64, indices into the step's tokens: position p predicts prompt token p + 1
    targets: np.ndarray  # [R] int64, those next prompt tokens
    counts: list[tuple[int, int, int]]  # (index in the batch, first entry, rows) per scoring sequence, in row order
    top_k: int  # the most any of them asks for


def prompt_rows(batch: ScheduledBatch, cu: np.ndarray) -> Optional[PromptRows]:
    """Each sequence that still needs prompt log-probabilities scores the positions of this chunk that predict a
    prompt token it has not recorded yet (after a preemption the recompute skips those it has)."""
    rows, targets, counts, top_k = [], [], [], 0
    for i, (s, n) in enumerate(zip(batch.seqs, batch.num_new_tokens)):
        if not s.needs_prompt_logprobs:
            continue
        start = s.num_computed
        first = max(start, len(s.prompt_logprobs) - 1)  # position p gives entry p + 1
        last = min(start + n, s.num_prompt_tokens - 1)
        if first >= last:
            continue
        rows.extend(range(int(cu[i]) + first - start, int(cu[i]) + last - start))
        targets.extend(s.token_ids[first + 1:last + 1])
        counts.append((i, first + 1, last - first))
        top_k = max(top_k, s.sampling.prompt_logprobs)
    if not rows:
        return None
    return PromptRows(np.asarray(rows, dtype=np.int64), np.asarray(targets, dtype=np.int64), counts, top_k)


def pack_batch(batch: ScheduledBatch, block_size: int, use_cache: bool) -> HostInputs:
    """The batch's tensors on the host; `use_cache`: slots and block tables from the sequences' blocks."""
    seqs = batch.seqs
    num_seqs = len(seqs)
    new = np.asarray(batch.num_new_tokens, dtype=np.int64)
    start = np.fromiter((s.num_computed for s in seqs), dtype=np.int64, count=num_seqs)
    cu = np.zeros(num_seqs + 1, dtype=np.int64)
    np.cumsum(new, out=cu[1:])
    total = int(cu[-1])
    if total == num_seqs:  # decode: one token each, the one after the cached ones
        input_ids = np.fromiter((s.token_ids[s.num_computed] for s in seqs), dtype=np.int64, count=num_seqs)
        seq_of_token = np.arange(num_seqs)
        positions = start.copy()
    else:
        input_ids = np.fromiter(chain.from_iterable(s.token_ids[b:b + n] for s, b, n in
                                                    zip(seqs, start.tolist(), batch.num_new_tokens)),
                                dtype=np.int64, count=total)
        seq_of_token = np.repeat(np.arange(num_seqs), new)
        positions = np.arange(total, dtype=np.int64) - cu[:-1][seq_of_token] + start[seq_of_token]
    context_lens = start + new
    sampled = np.asarray(batch.sampled, dtype=bool)
    slot_mapping = tables = None
    if use_cache:
        tables = block_tables(seqs)
        slot_mapping = tables[seq_of_token, positions // block_size].astype(np.int64) * block_size \
            + positions % block_size
    return HostInputs(
        input_ids=input_ids, positions=positions, cu_seqlens_q=cu.astype(np.int32),
        context_lens=context_lens.astype(np.int32), logits_indices=(cu[1:] - 1)[sampled],
        slot_mapping=slot_mapping, block_tables=tables, max_query_len=int(new.max(initial=0)),
        max_context_len=int(context_lens.max(initial=0)),
        prompt_rows=prompt_rows(batch, cu) if batch.phase is Phase.PREFILL else None)


def longest_first(context_lens: np.ndarray) -> np.ndarray:
    """The batch rows by context length, longest first (ties in batch order), int32: the order in which decode
    attention and MLA decode start their programs, so that the shortest fill the last wave
    (kernels/decode_settings.py)."""
    return np.argsort(-context_lens.astype(np.int64), kind="stable").astype(np.int32)


def block_tables(seqs) -> np.ndarray:
    """[B, longest table] int32, each row a sequence's blocks then -1."""
    lens = np.fromiter((len(s.block_table) for s in seqs), dtype=np.int64, count=len(seqs))
    width = max(int(lens.max(initial=0)), 1)
    flat = np.fromiter(chain.from_iterable(s.block_table for s in seqs), dtype=np.int32, count=int(lens.sum()))
    tables = np.full((len(seqs), width), -1, dtype=np.int32)
    tables[np.arange(width) < lens[:, None]] = flat  # row-major, so each row gets its own blocks in order
    return tables
