"""The first pass over the input, before any model work: how many rows, and which explicit ids repeat."""

from __future__ import annotations

import json
import re
from array import array
from dataclasses import dataclass, field

import torch

from .reader import _RowError, _lines, _parse_line


# A row that opens with its id: a string without escapes, or an integer, as json.dumps would write it.
_FAST = {"id": re.compile(rb'\s*\{\s*"id"\s*:\s*("[^"\\\x00-\x1f]*"|-?[1-9][0-9]*|0)\s*[,}]'),
         "custom_id": re.compile(rb'\s*\{\s*"custom_id"\s*:\s*("[^"\\\x00-\x1f]+")\s*[,}]')}


@dataclass
class InputScan:
    num_rows: int
    duplicates: dict[str, list[int]] = field(default_factory=dict)
    """An id (as JSON) that several rows give explicitly -> the line numbers of those rows."""

    def duplicates_message(self, path: str, limit: int = 5) -> str:
        shown = [f"{key} on lines {', '.join(map(str, lines))}" for key, lines in list(self.duplicates.items())[:limit]]
        more = len(self.duplicates) - limit
        return (f"data.input={path!r} gives the same id to several rows: {'; '.join(shown)}"
                f"{f' (and {more} more ids)' if more > 0 else ''}. Outputs are matched to inputs by id, so each "
                f"explicit id must be unique: fix those rows, or drop their ids to use line numbers")


def scan_input(path: str, data_format: str = "jsonl") -> InputScan:
    """Count rows and find repeated explicit ids ("id", or "custom_id" for OpenAI batch rows).

    Memory stays at 8 bytes a row: pass 1 keeps one hash per explicit id; only when two hashes collide
    does pass 2 read the file again to name the ids and their lines (and drop hash collisions).
    """
    key_name = "custom_id" if data_format == "openai" else "id"
    hashes = array("q")
    num_rows = 0
    for lineno, raw in _lines(path):
        num_rows += 1
        key = _explicit_id(raw, lineno, key_name)
        if key is not None:
            hashes.append(hash(key))
    if len(hashes) < 2:
        return InputScan(num_rows)
    ordered = torch.frombuffer(hashes, dtype=torch.int64).sort().values
    repeated = set(ordered[1:][ordered[1:] == ordered[:-1]].tolist())
    if not repeated:
        return InputScan(num_rows)
    lines: dict[str, list[int]] = {}
    for lineno, raw in _lines(path):
        key = _explicit_id(raw, lineno, key_name)
        if key is not None and hash(key) in repeated:
            key = _explicit_id(raw, lineno, key_name, exact=True)
            if key is not None:
                lines.setdefault(key, []).append(lineno)
    return InputScan(num_rows, {k: v for k, v in lines.items() if len(v) > 1})


def _explicit_id(raw: bytes, lineno: int, key_name: str, exact: bool = False):
    """The row's own id as canonical JSON, or None when the row gives none (or none that can be used).

    Not `exact`: rows that start with a plain id and name it once skip the full JSON parse. The key is
    then the one a full parse would give, or (for a broken row) one that pass 2 drops, exact.
    """
    quoted = f'"{key_name}"'.encode()
    if quoted not in raw:
        return None  # cheap: most rows of a file without ids are never parsed here
    if not exact and raw.count(quoted) == 1:
        m = _FAST[key_name].match(raw)
        if m:
            try:
                return m.group(1).decode("utf-8")
            except UnicodeDecodeError:
                pass
    try:
        row, _ = _parse_line(raw, lineno)
    except _RowError:
        return None  # the reader turns the row into an error row carrying its line number
    if key_name not in row or isinstance(row[key_name], (dict, list)):
        return None
    if key_name == "custom_id" and not (isinstance(row[key_name], str) and row[key_name]):
        return None
    return json.dumps(row[key_name], ensure_ascii=False)
