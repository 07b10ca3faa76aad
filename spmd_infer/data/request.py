"""What the input reader yields: a runnable request, or the error row that replaces a bad one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..sampling_params import SamplingParams


@dataclass
class Request:
    index: int
    """0-based position of the row in the input file; output order and resume key."""
    id: Any
    """The row's "id" (any JSON scalar), or its 1-based line number when absent."""
    prompt_token_ids: list[int]
    sampling: SamplingParams
    prompt: Optional[str] = None
    """The prompt text, or the rendered chat template; None for token-id rows."""
    api: Optional[dict] = None
    """For a row of an OpenAI batch file: its endpoint, model and logprobs request (data/openai_batch.py)."""


@dataclass
class ErrorRow:
    index: int
    id: Any
    type: str
    """Short machine-readable kind: invalid_json, missing_prompt, empty_prompt, prompt_too_long, ..."""
    message: str
    """Human-readable reason that names the input line."""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "error": {"type": self.type, "message": self.message}}
