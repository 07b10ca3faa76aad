"""Per-DP-rank continuous batching: chunked prefill first, else one decode token per running sequence."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..parallel.dp_meta import Phase
from .block_manager import BlockManager
from .sequence import Sequence, SeqStatus

# Decode batches stay in admission order. Ordering them longest context first, with decode attention's grid running
# KV heads fastest so the shortest programs start last, was built and timed (session 10, H200, Qwen3-0.6B
# nano-vllm, run_nano_decode_tiles.sh at commit a9df00c): the decode step was 5.8 ms both ways, and tok/s moved
# within the run-to-run spread (25.2k / 24.4k against 24.6k / 23.0k). A list-scheduling model had promised 3-17%.


@dataclass
class ScheduledBatch:
    phase: Phase
    seqs: list[Sequence] = field(default_factory=list)
    num_new_tokens: list[int] = field(default_factory=list)  # tokens each sequence runs this step
    sampled: list[bool] = field(default_factory=list)  # sequence reaches its last token, so it samples
    capture_bucket: int = 0  # > 0: a synthetic decode batch that records the CUDA graph of this bucket

    def add(self, seq: Sequence, n: int) -> None:
        self.seqs.append(seq)
        self.num_new_tokens.append(n)
        self.sampled.append(seq.num_computed + n == len(seq))

    @property
    def sampled_seqs(self) -> list[Sequence]:
        """The sequences that sample a token this step, in the order of the step's sampled tokens."""
        return [s for s, sampled in zip(self.seqs, self.sampled) if sampled]

    @property
    def num_tokens(self) -> int:
        return sum(self.num_new_tokens) or self.capture_bucket

    @property
    def num_seqs(self) -> int:
        return len(self.seqs) or self.capture_bucket

    def __bool__(self) -> bool:
        return bool(self.seqs) or self.capture_bucket > 0


class Scheduler:
    def __init__(self, blocks: BlockManager, max_num_seqs: int, max_num_batched_tokens: int,
                 max_model_len: int = 1 << 62):
        self.blocks = blocks
        self.max_model_len = max_model_len
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0
        self.num_prefill_chunks = 0  # prefill pieces that stopped short of the prompt's end (chunked prefill)

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    @property
    def num_unfinished(self) -> int:
        return len(self.waiting) + len(self.running)

    @property
    def load_tokens(self) -> int:
        """KV tokens held plus prompt tokens queued: what least-loaded assignment compares."""
        return sum(len(s) for s in self.running) + sum(s.num_uncomputed for s in self.waiting)

    def schedule(self) -> ScheduledBatch:
        batch = self._schedule_prefill()
        if not batch:
            batch = self._schedule_decode()
        if not batch and self.waiting and not self.running:
            # Startup checks make every request fit an empty cache, so this is a bug, not a state to wait in.
            raise RuntimeError(f"scheduler stalled: {len(self.waiting)} waiting, {self.blocks.num_free} free blocks")
        return batch

    def _schedule_prefill(self) -> ScheduledBatch:
        batch = ScheduledBatch(Phase.PREFILL)
        budget = self.max_num_batched_tokens
        for seq in self.waiting:
            if budget == 0 or len(self.running) + len(batch.seqs) >= self.max_num_seqs:
                break
            fresh = seq.num_computed == 0
            if fresh:
                self.blocks.match_prefix(seq)  # leading blocks another request already computed
            # A prompt longer than the budget is prefilled in chunks over several steps.
            n = min(seq.num_uncomputed, budget)
            if not self.blocks.can_allocate(seq, n):
                if fresh:
                    self.blocks.unmatch(seq)  # hold no blocks while waiting
                break
            self.blocks.allocate(seq, n)
            batch.add(seq, n)
            self.num_prefill_chunks += not batch.sampled[-1]
            budget -= n
        return batch

    def _schedule_decode(self) -> ScheduledBatch:
        chosen: list[Sequence] = []
        queue = deque(self.running)
        block_size = self.blocks.block_size
        while queue:
            seq = queue.popleft()
            if seq.reached_length_limit(self.max_model_len):
                continue  # its last token (still in flight, see RequestSource.advance) ends it by length
            if seq.num_computed < len(seq.block_table) * block_size:
                chosen.append(seq)  # the common case: the next token's slot is in a block it holds
                continue
            while not self.blocks.can_allocate(seq, 1):
                # Out of blocks: preempt the most recently admitted sequence (maybe this one) to recompute later.
                victim = queue.pop() if queue else seq
                self._preempt(victim)
                if victim is seq:
                    break
            else:
                self.blocks.allocate(seq, 1)
                chosen.append(seq)
        # One token each (filled in bulk: this runs every decode step over the whole batch).
        return ScheduledBatch(Phase.DECODE, chosen, [1] * len(chosen),
                              [s.num_computed + 1 == len(s.token_ids) for s in chosen])

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.blocks.release(seq)
        seq.reset_for_recompute()
        # Behind a partly prefilled sequence, which must keep the front: it holds blocks, and two partial
        # prefills could each wait forever for the other's blocks.
        front_is_partial = bool(self.waiting) and self.waiting[0].num_computed > 0
        self.waiting.insert(1 if front_is_partial else 0, seq)
        self.num_preemptions += 1

    def postprocess(self, batch: ScheduledBatch) -> None:
        """Account the tokens this step computed; move finished prefills to running, free finished ones."""
        for seq, n, sampled in zip(batch.seqs, batch.num_new_tokens, batch.sampled):
            seq.num_computed += n
            self.blocks.register_full_blocks(seq)
            if seq.status is SeqStatus.FINISHED:
                self._remove(seq)
            elif sampled and seq.status is SeqStatus.WAITING:
                # Prefill done: its last prompt (or recomputed) token ran and the next token was sampled.
                self.waiting.remove(seq)
                seq.status = SeqStatus.RUNNING
                self.running.append(seq)

    def finish(self, seq: Sequence) -> None:
        """A sequence found finished outside postprocess (a resolved in-flight token): drop it now."""
        self._remove(seq)

    def _remove(self, seq: Sequence) -> None:
        if seq in self.running:
            self.running.remove(seq)
        else:
            self.waiting.remove(seq)
        self.blocks.release(seq)
