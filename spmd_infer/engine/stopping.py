"""Appends a sampled token and decides whether (and why) the sequence is finished, vLLM's rules."""

from __future__ import annotations

from typing import Any, Optional

from .sequence import Sequence, SeqStatus


class StopChecker:
    def __init__(self, eos_ids: frozenset[int], max_model_len: int, tokenizer: Optional[Any]):
        self.eos_ids = eos_ids
        self.max_model_len = max_model_len
        self.tokenizer = tokenizer

    def append(self, seq: Sequence, token: int) -> bool:
        """Add `token` to `seq`; returns True if that finished it (finish_reason and text are set). A request
        with max_tokens 0 (scoring its prompt only) ends at its first token, which it drops."""
        p = seq.sampling
        if p.max_tokens == 0:
            return self._finish(seq, "length")
        seq.token_ids.append(token)
        reason = None
        if seq.num_output_tokens >= p.min_tokens:
            if (not p.ignore_eos and token in self.eos_ids) or token in p.stop_token_ids:
                reason = "stop"
            elif p.stop and self.tokenizer is not None and self._cut_at_stop_string(seq):
                reason = "stop"
        if reason is None and seq.reached_length_limit(self.max_model_len):
            reason = "length"
        if reason is None:
            return False
        return self._finish(seq, reason)

    def _finish(self, seq: Sequence, reason: str) -> bool:
        seq.finish_reason = reason
        seq.status = SeqStatus.FINISHED
        if seq.text is None and self.tokenizer is not None:
            seq.text = self.tokenizer.decode(seq.output_ids, skip_special_tokens=True)
        return True

    def _cut_at_stop_string(self, seq: Sequence) -> bool:
        text = self.tokenizer.decode(seq.output_ids, skip_special_tokens=True)
        hits = [i for i in (text.find(s) for s in seq.sampling.stop) if i >= 0]
        if not hits:
            return False
        seq.text = text[: min(hits)]  # the stop string itself is not part of the output, as in vLLM
        return True
