"""Streams the input JSONL file into tokenized requests, turning every bad row into an error row."""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Iterator, Optional

from ..sampling_params import InvalidRequest, SamplingParams
from . import openai_batch
from .request import ErrorRow, Request

logger = logging.getLogger(__name__)

_PROMPT_KEYS = ("prompt", "messages", "prompt_token_ids")
_KNOWN_KEYS = frozenset(_PROMPT_KEYS + ("id", "sampling"))


def _reject_constant(name: str) -> Any:
    # NaN/Infinity are not JSON; accepting them would let them leak into ids or sampling values
    # and then into an output file that strict JSON readers cannot parse.
    raise ValueError(f"{name} is not valid JSON")


def read_requests(
    path: str, tokenizer, defaults: SamplingParams, max_model_len: int, vocab_size: int, data_format: str = "jsonl",
    skip: Optional[Callable[[int], bool]] = None,
) -> Iterator[Request | ErrorRow]:
    """Yield one Request or ErrorRow per non-blank line of `path`, in file order.

    `data_format` "openai": rows are OpenAI batch requests, converted by data/openai_batch.py.

    `skip(index)` true: the row is done already (resume); it is neither parsed nor yielded.
    Never raises for a bad row; only failing to open or read the file itself raises.
    """
    warned_unknown = False
    for index, (lineno, raw) in enumerate(_lines(path)):
        if skip is not None and skip(index):
            continue
        row_id: Any = lineno  # until the row's own id is known to be usable
        try:
            row, fields = _parse_line(raw, lineno)
            api = None
            if data_format == "openai":
                row_id = openai_batch.custom_id(row, lineno)
                row, api = openai_batch.to_native(row, lineno)
                fields = []
            if fields and not warned_unknown:
                warned_unknown = True
                logger.warning("%s line %d: ignoring unknown field(s) %s (known: %s); "
                               "further unknown fields in this file are not reported",
                               path, lineno, fields, sorted(_KNOWN_KEYS))
            row_id = _row_id(row, lineno)
            item = _build(row, row_id, index, lineno, tokenizer, defaults, max_model_len, vocab_size)
            item.api = api
        except _RowError as e:
            item = ErrorRow(index, row_id, e.kind, e.message)
        except InvalidRequest as e:
            item = ErrorRow(index, row_id, e.kind, str(e))
        except Exception as e:  # noqa: BLE001 - one odd row must not kill a long batch job
            logger.exception("%s line %d: unexpected error while reading the row", path, lineno)
            item = ErrorRow(index, row_id, "internal_error", f"line {lineno}: unexpected error reading the row: {e!r}")
        # Yield outside the try so an exception thrown into the generator is not taken for a row error.
        yield item


def _lines(path: str) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of every non-blank line: the rows, whose 0-based position is their index."""
    # Binary mode: splits only on b"\n" (a U+2028 inside a JSON string must not end the row)
    # and lets us report invalid UTF-8 per row instead of failing the whole file.
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 BOM written by some editors; json.loads rejects it
            if raw.strip():
                yield lineno, raw


class _RowError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


def _parse_line(raw: bytes, lineno: int) -> tuple[dict, list[str]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _RowError("invalid_utf8", f"line {lineno}: not valid UTF-8 (byte offset {e.start}); "
                                        "save the input file as UTF-8") from None
    try:
        row = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise _RowError("invalid_json",
                        f"line {lineno}: malformed JSON ({e}); each line must be one JSON object") from None
    if not isinstance(row, dict):
        raise _RowError("invalid_json", f"line {lineno}: expected a JSON object like "
                                        f'{{"prompt": "..."}}, got a JSON {type(row).__name__}')
    return row, sorted(set(row) - _KNOWN_KEYS)


def _row_id(row: dict, lineno: int) -> Any:
    row_id = row.get("id", lineno)
    if isinstance(row_id, (dict, list)):
        raise _RowError("invalid_id", f'line {lineno}: "id" must be a string, number, boolean or null, '
                                      f"not a JSON {'object' if isinstance(row_id, dict) else 'array'}")
    return row_id


def _build(row: dict, row_id: Any, index: int, lineno: int, tokenizer, defaults: SamplingParams,
           max_model_len: int, vocab_size: int) -> Request:
    def fail(kind: str, msg: str) -> None:
        raise _RowError(kind, f"line {lineno}: {msg}")

    given = [k for k in _PROMPT_KEYS if k in row]
    if not given:
        fail("missing_prompt", 'row has no prompt; give exactly one of "prompt", "messages" or "prompt_token_ids"')
    if len(given) > 1:
        fail("ambiguous_prompt", f'row gives {given}; keep exactly one of "prompt", "messages" or "prompt_token_ids"')
    key = given[0]
    value = row[key]

    # Structural checks first, so a malformed row is reported as such even without a tokenizer.
    if key == "prompt":
        if not isinstance(value, str):
            fail("invalid_prompt", f'"prompt" must be a string, got {_json_type(value)}')
        if not value:
            fail("empty_prompt", '"prompt" is an empty string; give some text')
    elif key == "messages":
        if not isinstance(value, list):
            fail("invalid_prompt",
                 f'"messages" must be a list of {{"role": ..., "content": ...}} objects, got {_json_type(value)}')
        if not value:
            fail("empty_prompt", '"messages" is an empty list; give at least one message')
        for i, m in enumerate(value):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                fail("invalid_prompt",
                     f'messages[{i}] must be an object with string "role" and "content", got {m!r:.200}')
    else:
        if not isinstance(value, list):
            fail("invalid_prompt", f'"prompt_token_ids" must be a list of integers, got {_json_type(value)}')
        if not value:
            fail("empty_prompt", '"prompt_token_ids" is an empty list; give at least one token id')
        for i, t in enumerate(value):
            # bool is an int subclass in Python, but `true` is never a meaningful token id.
            if isinstance(t, bool) or not isinstance(t, int):
                fail("invalid_prompt", f"prompt_token_ids[{i}] must be an integer, got {t!r:.50}")

    try:
        sampling = defaults.with_overrides(row.get("sampling"))
    except InvalidRequest as e:
        fail(e.kind, f"{e}; fix the row's \"sampling\" object")

    if sampling.stop and tokenizer is None:
        # Stop strings are matched on decoded text: without a tokenizer they could never fire.
        fail("no_tokenizer", 'sampling "stop" strings need a tokenizer but the model folder has no tokenizer files; '
                             "use stop_token_ids instead, or set model.tokenizer=DIR")
    text = None
    if key == "prompt_token_ids":
        ids = value
    else:
        if tokenizer is None:
            fail("no_tokenizer", f'"{key}" needs a tokenizer but the model folder has no tokenizer files; '
                                 "give prompt_token_ids instead, or set model.tokenizer=DIR")
        if key == "prompt":
            text = value
            ids = list(tokenizer.encode(text))
        else:
            if not getattr(tokenizer, "chat_template", None):
                fail("no_chat_template", '"messages" needs a chat template but the tokenizer has none; '
                                         'give "prompt" with the text already formatted, or prompt_token_ids')
            try:
                text = tokenizer.apply_chat_template(value, tokenize=False, add_generation_prompt=True)
            except Exception as e:  # templates call raise_exception() for e.g. unsupported roles
                fail("invalid_prompt", f"chat template rejected the messages: {e}")
            # The template already placed BOS and other special tokens; don't add them twice.
            ids = list(tokenizer.encode(text, add_special_tokens=False))
        if not ids:
            fail("empty_prompt", f'"{key}" encodes to 0 tokens; give some text')

    outside = sampling.bias_ids_outside(vocab_size)
    if outside:
        fail("invalid_token_id", f"logit_bias names token id {outside[0]}, outside the model's vocabulary "
                                 f"[0, {vocab_size}); fix the row's \"sampling\" object")
    for t in ids:
        if not 0 <= t < vocab_size:
            fix = ("use ids produced by this model's tokenizer" if key == "prompt_token_ids"
                   else "the tokenizer does not match the model; check model.tokenizer")
            fail("invalid_token_id", f"token id {t} is outside the model's vocabulary [0, {vocab_size}); {fix}")
    keep = sampling.truncate_prompt_tokens
    if keep == -1:
        keep = max_model_len - 1
    if 0 < keep < len(ids):
        ids = ids[-keep:]  # the end of the prompt, next to what is generated, is what it keeps
        text = None  # no longer the prompt's text (an echo decodes the kept tokens)
    if len(ids) >= max_model_len:
        # >= rather than >: the prompt must leave room for at least one generated token.
        fail("prompt_too_long", f"prompt is {len(ids)} tokens but model.max_model_len is {max_model_len} "
                                "(prompt plus at least one generated token must fit); shorten the prompt, raise "
                                "model.max_model_len or set sampling.truncate_prompt_tokens")
    return Request(index=index, id=row_id, prompt_token_ids=ids, sampling=sampling, prompt=text)


def _json_type(v: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(v), type(v).__name__)
