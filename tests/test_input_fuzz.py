"""Fuzzing the input side (reader, first-pass scan) and unit tests of the shard files that resume relies on."""

from __future__ import annotations

import json
import random

import pytest

from spmd_infer.data.reader import read_requests
from spmd_infer.data.request import ErrorRow, Request
from spmd_infer.data.scan import scan_input
from spmd_infer.data.writer import ShardWriter, done_rows, merge_shards, shard_path
from spmd_infer.sampling_params import SamplingParams

VOCAB = 300
DEFAULTS = SamplingParams(temperature=0.0, max_tokens=8)


class ByteTokenizer:
    """Just what the reader calls: one token per UTF-8 byte, and a trivial chat template."""

    chat_template = "yes"

    def encode(self, text, add_special_tokens=True):
        return list(text.encode("utf-8"))

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        if any(m["role"] == "tool" for m in messages):
            raise ValueError("tool role not supported")
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"


def _fuzz_line(rng: random.Random, i: int) -> bytes:
    """One input line: a valid row, a broken one, or noise; never a line break inside."""
    ids = [rng.randrange(-5, VOCAB + 5) for _ in range(rng.randrange(0, 12))]
    text = "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x2FFF), 0x2028, 0])) for _ in range(
        rng.randrange(0, 20)))
    rows = [
        {"id": f"u{i}", "prompt_token_ids": ids},
        {"prompt": text},
        {"id": f"u{i}", "messages": [{"role": rng.choice(["user", "tool", 3]), "content": text}]},
        {"id": rng.choice([None, True, 1.5, [1], {"a": 1}, f"u{i}"]), "prompt_token_ids": ids[:3] or [5]},
        {"id": f"u{i}", "prompt_token_ids": [7] * rng.randrange(60, 200)},  # longer than max_model_len
        {"id": f"u{i}", "prompt_token_ids": [5, 6], "sampling": {
            rng.choice(["temperature", "top_p", "max_tokens", "stop", "stop_token_ids", "n", "bogus"]):
            rng.choice([-1, 0, 0.5, 2, "x", None, [1], ["a", 2], {"a": 1}, 1e400])}},
        {"id": f"u{i}", "prompt_token_ids": [5], "extra": text},
        [1, 2, 3],
        {"id": f"u{i}", "prompt": text, "prompt_token_ids": ids},
    ]
    kind = rng.randrange(len(rows) + 5)
    if kind < len(rows):
        line = json.dumps(rows[kind], ensure_ascii=rng.random() < 0.5).encode("utf-8")
        if rng.random() < 0.15:
            line = line[: rng.randrange(len(line) + 1)]  # truncated
        return line
    if kind == len(rows):
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))).replace(b"\n", b"")
    if kind == len(rows) + 1:
        return b"[" * 5000 + b"]" * 5000  # nesting deep enough for RecursionError in some parsers
    if kind == len(rows) + 2:
        return b'{"id": "x%d", "prompt_token_ids": [1e999999, NaN, Infinity]}' % i
    if kind == len(rows) + 3:
        return b"\xef\xbb\xbf" + json.dumps({"prompt_token_ids": [5]}).encode()  # a BOM not on line 1
    return rng.choice([b"", b"   ", b"\r", b"\t"])  # blank lines do not count as rows


@pytest.mark.parametrize("seed", range(4))
def test_reader_fuzz_every_row_gives_a_request_or_an_error(tmp_path, seed):
    rng = random.Random(seed)
    lines = [_fuzz_line(rng, i) for i in range(400)]
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(lines) + (b"\n" if seed % 2 else b""))  # with and without a final newline
    rows = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]

    items = list(read_requests(str(path), ByteTokenizer(), DEFAULTS, 64, VOCAB))
    assert len(items) == len(rows)
    assert [it.index for it in items] == list(range(len(rows)))
    for it, (lineno, _) in zip(items, rows):
        assert isinstance(it, (Request, ErrorRow))
        if isinstance(it, ErrorRow):
            assert f"line {lineno}" in it.message and it.type != "internal_error", it
            json.dumps(it.to_json(), allow_nan=False)  # error rows are strict JSON
        else:
            assert 0 < len(it.prompt_token_ids) < 64 and all(0 <= t < VOCAB for t in it.prompt_token_ids)
    assert scan_input(str(path)).num_rows == len(rows)
    # Resume's skip: the rows it skips are neither parsed nor yielded; indices keep their meaning.
    odd = list(read_requests(str(path), ByteTokenizer(), DEFAULTS, 64, VOCAB, skip=lambda i: i % 2 == 0))
    assert [it.index for it in odd] == list(range(1, len(rows), 2))


def test_scan_names_repeated_explicit_ids_only(tmp_path):
    rows = [b'{"id": "a", "prompt": "x"}', b'{"prompt": "no id"}', b"not json", b'{"id": 2, "prompt": "y"}',
            b'', b'{"prompt": "x", "id": "a"}', b'{"id": [1], "prompt": "z"}', b'{"id": [1], "prompt": "z"}',
            b'{"id": 2.0}', b'{"id": "2"}', b'{"id": "a"']  # last: broken JSON, no usable id
    path = tmp_path / "ids.jsonl"
    path.write_bytes(b"\n".join(rows) + b"\n")
    scan = scan_input(str(path))
    assert scan.num_rows == 10
    assert scan.duplicates == {'"a"': [1, 6]}
    message = scan.duplicates_message(str(path))
    assert '"a" on lines 1, 6' in message and "unique" in message


def test_scan_of_many_unique_ids_finds_nothing(tmp_path):
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({"id": i, "prompt_token_ids": [1]}) + "\n" for i in range(20000)))
    assert scan_input(str(path)).duplicates == {} and scan_input(str(path)).num_rows == 20000


def test_shards_survive_torn_tails_and_merge_in_input_order(tmp_path):
    shards = tmp_path / "out.jsonl.shards"
    a = ShardWriter(shard_path(shards, 1, 0), sync_rows=2)
    b = ShardWriter(shard_path(shards, 1, 1))
    for i in (3, 0, 4):
        a.write(i, {"id": f"r{i}", "text": "caf\u00e9 \u2028"})
    b.write(1, {"id": "r1"})
    a.close()
    b.close()
    with open(shard_path(shards, 1, 1), "ab") as f:
        f.write(b'{"index": 2, "row": {"id": "r2", "te')  # killed mid-write
    assert list(done_rows(shards, 6)) == [1, 1, 0, 1, 1, 0]
    with pytest.raises(RuntimeError, match="2 of 6 rows are missing"):
        merge_shards(shards, tmp_path / "out.jsonl", 6)
    c = ShardWriter(shard_path(shards, 2, 0))
    for i in (5, 2, 3):  # row 3 again: never expected, but the output must not hold it twice
        c.write(i, {"id": f"r{i}", "again": True})
    c.close()
    merge_shards(shards, tmp_path / "out.jsonl", 6)
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").split("\n")[:-1]]
    assert [r["id"] for r in out] == [f"r{i}" for i in range(6)]
    assert "again" not in out[3] and out[2]["again"] and out[0]["text"] == "caf\u00e9 \u2028"
    with pytest.raises(FileExistsError):
        ShardWriter(shard_path(shards, 2, 0))  # a run never appends to a shard it did not create
