"""Per-request sampling parameters: the job's defaults merged with a row's overrides, validated."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Optional


class InvalidRequest(ValueError):
    """A request that cannot run; becomes an error row in the output rather than a crash."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int = 0
    max_tokens: int = 256
    min_tokens: int = 0
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, added to its logit), ids ascending
    logprobs: int = 0
    prompt_logprobs: int = 0  # top-k per prompt token after the first, plus the token's own
    truncate_prompt_tokens: int = 0  # keep only the prompt's last k tokens; -1: as many as max_model_len allows
    n: int = 1  # completions per prompt, each its own sequence

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def bias_ids_outside(self, vocab_size: int) -> list[int]:
        """logit_bias's token ids that the model's vocabulary lacks (ids are checked non-negative already)."""
        return [t for t, _ in self.logit_bias if t >= vocab_size]

    @property
    def penalizes(self) -> bool:
        """A repetition, presence or frequency penalty: the sequence's token counts live on the device
        (engine/penalty_state.py)."""
        return self.repetition_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0

    @classmethod
    def from_config(cls, cfg: Any, model_defaults: Optional[dict[str, Any]] = None) -> "SamplingParams":
        """Build from the job's SamplingConfig (an OmegaConf node or the dataclass); its unset (None)
        fields take `model_defaults` (from generation_config.json), else this class's defaults."""
        values = {}
        for f in fields(cls):
            v = getattr(cfg, f.name, None)
            values[f.name] = v if v is not None else (model_defaults or {}).get(f.name, f.default)
        return cls._coerced(values)

    def with_overrides(self, overrides: Any) -> "SamplingParams":
        """A row's `"sampling": {...}` on top of the job's values; raises InvalidRequest if wrong."""
        if overrides is None:
            return self
        if not isinstance(overrides, dict):
            raise InvalidRequest("invalid_sampling", '"sampling" must be a JSON object')
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise InvalidRequest("invalid_sampling", f"unknown sampling field(s) {unknown}; known: {sorted(known)}")
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(overrides)
        return self._coerced(values)

    @classmethod
    def _coerced(cls, values: dict[str, Any]) -> "SamplingParams":
        def number(name: str, kind: type) -> Any:
            v = values[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not float(v).is_integer()):
                raise InvalidRequest("invalid_sampling",
                                     f"{name} must be {'an integer' if kind is int else 'a number'}, got {v!r}")
            return kind(v)

        def count(name: str) -> int:
            """An optional integer whose null means 0 (off)."""
            return number(name, int) if values[name] is not None else 0

        stop = values["stop"]
        if isinstance(stop, str):
            stop = [stop]
        if stop is None:
            stop = []
        if not isinstance(stop, Sequence) or not all(isinstance(s, str) and s for s in stop):
            raise InvalidRequest("invalid_sampling", f"stop must be a non-empty string or a list of them, got {stop!r}")
        stop_ids = values["stop_token_ids"] or []
        if not isinstance(stop_ids, Sequence) or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                                         for t in stop_ids):
            raise InvalidRequest("invalid_sampling", f"stop_token_ids must be non-negative integers, got {stop_ids!r}")
        bias = values["logit_bias"] or {}
        items = list(bias.items()) if isinstance(bias, Mapping) else bias
        try:
            # OpenAI's keys are strings ("50256": -100); ours, from YAML or the command line, may be integers.
            bias = {int(k): float(v) for k, v in items
                    if not isinstance(k, bool) and not isinstance(v, (bool, str)) and str(k).isdigit()}
        except (TypeError, ValueError):
            bias = None
        if bias is None or len(bias) != len(items):
            raise InvalidRequest("invalid_sampling", f"logit_bias must map token ids to numbers, e.g. "
                                                     f'{{"50256": -100}}, got {values["logit_bias"]!r:.100}')
        if not isinstance(values["ignore_eos"], bool):
            raise InvalidRequest("invalid_sampling", f"ignore_eos must be true or false, got {values['ignore_eos']!r}")
        p = cls(
            temperature=number("temperature", float), top_p=number("top_p", float), top_k=number("top_k", int),
            min_p=number("min_p", float), seed=number("seed", int), max_tokens=number("max_tokens", int),
            min_tokens=number("min_tokens", int), stop=tuple(stop), stop_token_ids=tuple(stop_ids),
            ignore_eos=values["ignore_eos"], repetition_penalty=number("repetition_penalty", float),
            presence_penalty=number("presence_penalty", float), frequency_penalty=number("frequency_penalty", float),
            logit_bias=tuple(sorted(bias.items())),
            logprobs=count("logprobs"), prompt_logprobs=count("prompt_logprobs"),
            truncate_prompt_tokens=count("truncate_prompt_tokens"),
            n=number("n", int),
        )
        p._check_ranges()
        return p

    def _check_ranges(self) -> None:
        problems = []
        if self.temperature < 0:
            problems.append(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            problems.append(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < -1:
            problems.append(f"top_k must be -1, 0 (disabled) or positive, got {self.top_k}")
        if not 0.0 <= self.min_p <= 1.0:
            problems.append(f"min_p must be in [0, 1], got {self.min_p}")
        if self.max_tokens < 1 and not (self.max_tokens == 0 and self.prompt_logprobs):
            problems.append(f"max_tokens must be >= 1 (0, generating nothing, only to score the prompt with "
                            f"prompt_logprobs), got {self.max_tokens}")
        if not 0 <= self.min_tokens <= self.max_tokens:
            problems.append(f"min_tokens must be in [0, max_tokens={self.max_tokens}], got {self.min_tokens}")
        if self.repetition_penalty <= 0:
            problems.append(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if any(not -100.0 <= b <= 100.0 for _, b in self.logit_bias):
            problems.append(f"logit_bias values must be in [-100, 100] (OpenAI's range), got {dict(self.logit_bias)}")
        for name in ("presence_penalty", "frequency_penalty"):
            if not -2.0 <= getattr(self, name) <= 2.0:
                problems.append(f"{name} must be in [-2, 2] (OpenAI's range), got {getattr(self, name)}")
        if not 0 <= self.logprobs <= 20:
            problems.append(f"logprobs must be in [0, 20] (top-k per generated token; 0 = none), got {self.logprobs}")
        if not 0 <= self.prompt_logprobs <= 20:
            problems.append(f"prompt_logprobs must be in [0, 20] (top-k per prompt token; 0 = none), "
                            f"got {self.prompt_logprobs}")
        if self.truncate_prompt_tokens < -1:
            problems.append(f"truncate_prompt_tokens must be -1 (to max_model_len), 0 (off) or the tokens to keep, "
                            f"got {self.truncate_prompt_tokens}")
        if not 1 <= self.n <= 128:
            problems.append(f"n must be in [1, 128] (completions per prompt), got {self.n}")
        if problems:
            raise InvalidRequest("invalid_sampling", "; ".join(problems))

    def replace(self, **changes: Any) -> "SamplingParams":
        return replace(self, **changes)
