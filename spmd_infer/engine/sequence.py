"""A request's running state: its tokens, how many are in the KV cache, its blocks and why it finished."""

from __future__ import annotations

import enum
from typing import Optional

from ..data.request import Request


PLACEHOLDER = -1
"""A sampled token still on the device (overlapped steps): in token_ids until RequestSource.resolve."""


class SeqStatus(enum.Enum):
    WAITING = "waiting"  # queued, or preempted and waiting to recompute
    RUNNING = "running"  # prefill complete, decoding
    FINISHED = "finished"


class Sequence:
    def __init__(self, request: Request, sample_index: int = 0):
        self.request = request
        self.sample_index = sample_index  # which of the request's n completions this is
        self.sampling = request.sampling
        self.token_ids: list[int] = list(request.prompt_token_ids)
        self.num_prompt_tokens = len(self.token_ids)
        self.num_computed = 0  # tokens whose K/V are in the cache
        self.block_table: list[int] = []
        self.block_hashes: list[int] = []  # prefix-cache key of each full block (block_manager.py)
        self.status = SeqStatus.WAITING
        self.finish_reason: Optional[str] = None
        self.text: Optional[str] = None  # final text, decoded once at the end (or cut at a stop string)
        self.num_preemptions = 0
        self.logprobs: list[dict[int, float]] = []  # per output token, when sampling.logprobs > 0
        # Per prompt token when sampling.prompt_logprobs > 0 (None for the first, which nothing predicts); the
        # request's first completion computes them, the others may share its cached prefix.
        self.wants_prompt_logprobs = bool(self.sampling.prompt_logprobs) and sample_index == 0
        self.prompt_logprobs: list[Optional[dict[int, float]]] = [None] if self.wants_prompt_logprobs else []

    @property
    def id(self):
        return self.request.id

    @property
    def index(self) -> int:
        return self.request.index

    @property
    def key(self) -> tuple[int, int]:
        """Unique per sequence: (input row, completion number)."""
        return self.request.index, self.sample_index

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def output_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens:]

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    def reached_length_limit(self, max_model_len: int) -> bool:
        """max_tokens outputs, or max_model_len tokens in all: the sequence ends by length."""
        return self.num_output_tokens >= self.sampling.max_tokens or len(self.token_ids) >= max_model_len

    @property
    def needs_prompt_logprobs(self) -> bool:
        """Prompt log-probabilities still to compute: the prompt's forward cannot come from the prefix cache."""
        return self.wants_prompt_logprobs and len(self.prompt_logprobs) < self.num_prompt_tokens

    @property
    def num_uncomputed(self) -> int:
        return len(self.token_ids) - self.num_computed

    def reset_for_recompute(self) -> None:
        """Preemption by recompute: the blocks are gone, so prompt and outputs are prefilled again."""
        self.num_computed = 0
        self.block_table = []
        self.status = SeqStatus.WAITING
        self.num_preemptions += 1
