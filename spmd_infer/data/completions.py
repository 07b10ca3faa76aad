"""Output rows from finished sequences: one row per input row once all its n completions are done."""

from __future__ import annotations

from typing import Any, Optional

from . import openai_batch
from .logprob_json import entries_json
from .request import ErrorRow


class OutputRows:
    """Builds each output row in the input's format: ours (jsonl) or OpenAI batch answers."""

    def __init__(self, openai: bool, tokenizer: Optional[Any], model_name: str):
        self.openai = openai
        self.tokenizer = tokenizer
        self.model_name = model_name
        self._done: dict[int, list] = {}  # finished completions of requests with n > 1, by input row

    def error(self, err: ErrorRow) -> dict[str, Any]:
        return openai_batch.error_row(err) if self.openai else err.to_json()

    def finished(self, seq) -> Optional[dict[str, Any]]:
        """The row for `seq`'s request once its last completion finishes; None while others still run.

        All n completions of a request run on one DP rank (RequestSource.add), so this rank sees them all.
        """
        n = seq.sampling.n
        if n == 1:
            seqs = [seq]
        else:
            done = self._done.setdefault(seq.index, [])
            done.append(seq)
            if len(done) < n:
                return None
            seqs = sorted(self._done.pop(seq.index), key=lambda s: s.sample_index)
        if seq.request.api is not None:
            return openai_batch.response_row(seq.request, seqs, self.tokenizer, self.model_name)
        return native_row(seqs)


def native_row(seqs: list) -> dict[str, Any]:
    """Our row: the completion's fields at the top level for n = 1, an "outputs" list (vLLM's shape) for n > 1."""
    first = seqs[0]
    if len(seqs) == 1 and first.sampling.n == 1:
        row = {"id": first.id, **_completion(first, with_index=False)}
    else:
        row = {"id": first.id, "num_prompt_tokens": first.num_prompt_tokens,
               "num_output_tokens": sum(s.num_output_tokens for s in seqs),
               "outputs": [_completion(s, with_index=True) for s in seqs]}
    if first.sampling.prompt_logprobs:  # the first completion scored the prompt
        row["prompt_logprobs"] = entries_json(first.prompt_logprobs)
    return row


def _completion(seq, with_index: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"index": seq.sample_index} if with_index else {}
    row.update(text=seq.text, token_ids=seq.output_ids, finish_reason=seq.finish_reason)
    if not with_index:
        row["num_prompt_tokens"] = seq.num_prompt_tokens
    row["num_output_tokens"] = seq.num_output_tokens
    if seq.sampling.logprobs:
        # One {token id: logprob} per generated token: the top-k and the chosen token.
        row["logprobs"] = entries_json(seq.logprobs)
    return row
