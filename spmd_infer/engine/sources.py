"""What the step function runs: a DP rank's real requests, or the synthetic batch of the warmup step."""

from __future__ import annotations

from typing import Callable, Optional

from ..data.request import Request
from ..layers.sampler import sample_key
from ..parallel.dp_meta import Phase
from ..sampling_params import SamplingParams
from .scheduler import ScheduledBatch, Scheduler
from .sequence import PLACEHOLDER, Sequence, SeqStatus
from .stopping import StopChecker


class RequestSource:
    """A DP rank's scheduler plus the bookkeeping of finished requests."""

    def __init__(self, scheduler: Scheduler, stopper: StopChecker, on_finish: Callable[[Sequence], None],
                 defer_prefill: bool = False):
        self.scheduler = scheduler
        self.defer_prefill = defer_prefill  # runtime.overlap_prefill: prefill steps may leave tokens in flight too
        self.stopper = stopper
        self.eos_ids = stopper.eos_ids
        self.on_finish = on_finish
        self.num_finished = 0
        self.num_output_tokens = 0
        self._keys: dict[tuple[int, int], int] = {}
        self._open: dict[int, int] = {}  # completions still running, per request with n > 1

    def add(self, request: Request) -> None:
        # n > 1: each completion is a sequence of its own, with its own generator key.
        for i in range(request.sampling.n):
            seq = Sequence(request, sample_index=i)
            self._keys[seq.key] = sample_key(request.sampling.seed, request.id, i)
            self.scheduler.add(seq)
        self._open[request.index] = request.sampling.n

    def schedule(self) -> ScheduledBatch:
        return self.scheduler.schedule()

    def metadata(self) -> dict[str, int]:
        return dict(unfinished=self.scheduler.num_unfinished, free_blocks=self.scheduler.blocks.num_free,
                    finished=self.num_finished, load_tokens=self.scheduler.load_tokens,
                    output_tokens=self.num_output_tokens)

    def uses_cache(self) -> bool:
        return True

    def generator_keys(self, batch: ScheduledBatch) -> list[int]:
        return [self._keys[s.key] for s, sampled in zip(batch.seqs, batch.sampled) if sampled]

    def postprocess(self, batch: ScheduledBatch, tokens: list[int], logprobs: list) -> None:
        sampled = iter(zip(tokens, logprobs))
        for seq, did_sample in zip(batch.seqs, batch.sampled):
            if did_sample:
                token, top = next(sampled)
                before = seq.num_output_tokens  # a scoring-only request (max_tokens 0) keeps no token
                finished = self.stopper.append(seq, token)
                self.num_output_tokens += seq.num_output_tokens - before
                if top is not None and seq.num_output_tokens > before:
                    seq.logprobs.append(top)
                if finished:
                    self._finished(seq)
        self.scheduler.postprocess(batch)

    def record_prompt_logprobs(self, batch: ScheduledBatch, counts: list, scores: tuple) -> None:
        """A prefill chunk's prompt scores (ForwardBatch.prompt_scores) into its sequences, entry by entry:
        each the top-k of the raw model output and the prompt token's own log-probability."""
        ids, values, targets = scores
        at = 0
        for index, first, rows in counts:
            seq = batch.seqs[index]
            k = seq.sampling.prompt_logprobs
            assert len(seq.prompt_logprobs) == first, "prompt log-probabilities out of step with the prompt"
            for r in range(at, at + rows):
                entry = dict(zip(ids[r][:k], values[r][:k]))
                entry[seq.token_ids[first + r - at]] = targets[r]
                seq.prompt_logprobs.append(entry)
            at += rows

    def _finished(self, seq: Sequence) -> None:
        self._keys.pop(seq.key, None)
        self._open[seq.index] -= 1
        if not self._open[seq.index]:  # progress counts requests, not completions
            del self._open[seq.index]
            self.num_finished += 1
        self.on_finish(seq)

    # ---- overlapped steps (runtime.overlap_steps, overlap_prefill; Stepper runs them) -----------------------
    def can_defer(self, batch: Optional[ScheduledBatch] = None) -> bool:
        """With `batch`: whether its tokens may stay on the device for a step: a decode whose sequences need no token
        ids on the host to sample (no logprobs; penalties count tokens on the device), or with defer_prefill
        a prefill that samples some token so (one that samples none settles without waiting anyway), scores no
        prompt (its prompt log-probabilities are read on the host as it settles) and keeps every token it samples
        (no max_tokens 0). Without: whether the next schedule() may run while a step's tokens are still in flight:
        its decode would preempt no sequence (a recompute needs the ids) and samples as above; a prefill of waiting
        requests needs none of them."""
        s = self.scheduler
        if batch is not None:
            seqs = batch.sampled_seqs
            if batch.phase is Phase.PREFILL:
                if not (self.defer_prefill and seqs) or any(q.needs_prompt_logprobs for q in batch.seqs) \
                        or any(q.sampling.max_tokens == 0 for q in seqs):
                    return False
            elif batch.phase is not Phase.DECODE or len(seqs) < len(batch.seqs):
                return False
        else:
            seqs = s.running
            size = s.blocks.block_size
            if sum(q.num_computed >= len(q.block_table) * size for q in seqs) > s.blocks.num_free:
                return False
        return all(not q.sampling.logprobs for q in seqs)

    def advance(self, batch: ScheduledBatch) -> list[int]:
        """Account a launched step whose tokens are still on the device: each sampled sequence's new token is a
        placeholder until resolve(). Returns the placeholders' positions, in batch.sampled_seqs order."""
        if batch.phase is Phase.PREFILL:
            # Its tokens computed and its finished prompts running, as postprocess would; no token is known yet, and
            # none of the full blocks it indexes holds the placeholder (the sampled position is not computed).
            self.scheduler.postprocess(batch)
        else:
            for seq in batch.seqs:
                seq.num_computed += 1
        positions = []
        for seq in batch.sampled_seqs:
            positions.append(len(seq.token_ids))
            seq.token_ids.append(PLACEHOLDER)
        return positions

    def resolve(self, batch: ScheduledBatch, positions: list[int], tokens: list[int]) -> None:
        """An advanced step's tokens have arrived: each replaces its placeholder, then the usual stop rules
        run as if the later placeholders were not there; a sequence they stop loses those (void) tokens."""
        for seq, index, token in zip(batch.sampled_seqs, positions, tokens):
            if seq.status is SeqStatus.FINISHED:
                continue  # stopped by an earlier step; this token was computed in vain
            later = seq.token_ids[index + 1:]
            del seq.token_ids[index:]
            self.num_output_tokens += 1
            stopped = self.stopper.append(seq, token)
            if not stopped:
                seq.token_ids.extend(later)
            self.scheduler.blocks.register_full_blocks(seq, known_tokens=index + 1)
            if stopped:
                self.scheduler.finish(seq)
                self._finished(seq)


class WarmupSource:
    """One prefill batch of `num_tokens` synthetic tokens with no KV cache: warms kernels, measures peak memory."""

    eos_ids: frozenset[int] = frozenset()

    def __init__(self, num_tokens: int, max_num_seqs: int, vocab_size: int, max_model_len: int):
        self.batch = ScheduledBatch(Phase.PREFILL)
        # The largest step the scheduler can produce: the token budget, in sequences of at most
        # max_model_len tokens, at most max_num_seqs of them.
        num_seqs = max(1, min(max_num_seqs, -(-num_tokens // max_model_len)))
        per_seq = max(1, min(max_model_len, num_tokens // num_seqs))
        params = SamplingParams(temperature=1.0, max_tokens=1)
        for i in range(num_seqs):
            ids = [(i * 7919 + j * 31) % vocab_size for j in range(per_seq)]
            self.batch.add(Sequence(Request(index=-1 - i, id=f"warmup-{i}", prompt_token_ids=ids,
                                             sampling=params)), per_seq)
        self._done = False

    def schedule(self) -> ScheduledBatch:
        if self._done:
            return ScheduledBatch(Phase.IDLE)
        self._done = True
        return self.batch

    def metadata(self) -> dict[str, int]:
        return dict(unfinished=0 if self._done else 1)

    def uses_cache(self) -> bool:
        return False  # no KV cache yet

    def can_defer(self, batch: Optional[ScheduledBatch] = None) -> bool:
        return False  # synthetic steps always settle their tokens at once

    def generator_keys(self, batch: ScheduledBatch) -> list[int]:
        return [0] * sum(batch.sampled)

    def postprocess(self, batch: ScheduledBatch, tokens: list[int], logprobs: list) -> None:
        pass

    def add(self, request: Request) -> None:
        raise RuntimeError("the warmup step takes no requests")
