"""Log-probabilities as both output formats write them: one {token id: logprob} per token, ids as JSON strings."""

from __future__ import annotations

from typing import Optional


def entries_json(entries: list[Optional[dict[int, float]]]) -> list[Optional[dict[str, float]]]:
    """Each entry's top-k and its own token, keyed by the id as a string; None stays None (a prompt's first
    token, which nothing predicts)."""
    return [None if top is None else {str(t): lp for t, lp in top.items()} for top in entries]
