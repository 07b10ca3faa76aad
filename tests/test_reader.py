"""Unit tests for the streaming JSONL input reader (spmd_infer/data/reader.py)."""

from __future__ import annotations

import json
import logging

import pytest

from spmd_infer.data.reader import read_requests
from spmd_infer.data.request import ErrorRow, Request
from spmd_infer.sampling_params import SamplingParams

BOS, EOS = 256, 257
VOCAB = 258
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'tool' %}{{ raise_exception('tool role not supported') }}{% endif %}"
    "<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def _build_tokenizer():
    """A tiny offline byte-level tokenizer: one token per byte, BOS prepended on encode."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    assert len(alphabet) == 256
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab["<s>"], vocab["</s>"] = BOS, EOS
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", BOS)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


@pytest.fixture(scope="module")
def tok():
    return _build_tokenizer()


DEFAULTS = SamplingParams(temperature=0.0, max_tokens=16)


def _write(tmp_path, lines, name="in.jsonl"):
    p = tmp_path / name
    data = b"".join((ln if isinstance(ln, bytes) else (ln if isinstance(ln, str) else json.dumps(ln)).encode()) + b"\n"
                    for ln in lines)
    p.write_bytes(data)
    return str(p)


def _read(tmp_path, lines, tokenizer, max_model_len=64, vocab_size=VOCAB, defaults=DEFAULTS):
    return list(read_requests(_write(tmp_path, lines), tokenizer, defaults, max_model_len, vocab_size))


def _one_error(tmp_path, row, tokenizer, **kw) -> ErrorRow:
    out = _read(tmp_path, [row], tokenizer, **kw)
    assert len(out) == 1 and isinstance(out[0], ErrorRow), out
    assert out[0].message.startswith("line 1: "), out[0].message
    return out[0]


# ---------- good rows ----------

def test_prompt_row_adds_bos(tmp_path, tok):
    [r] = _read(tmp_path, [{"id": "a", "prompt": "hi"}], tok)
    assert isinstance(r, Request)
    assert r.id == "a" and r.index == 0 and r.prompt == "hi"
    assert r.prompt_token_ids == tok.encode("hi") and r.prompt_token_ids[0] == BOS and len(r.prompt_token_ids) == 3
    assert r.sampling == DEFAULTS


def test_messages_row_renders_template_without_double_bos(tmp_path, tok):
    msgs = [{"role": "user", "content": "hi"}]
    [r] = _read(tmp_path, [{"messages": msgs}], tok)
    assert isinstance(r, Request)
    assert r.prompt == "<s><user>hi\n<assistant>"
    assert r.prompt_token_ids.count(BOS) == 1 and r.prompt_token_ids[0] == BOS
    assert tok.decode(r.prompt_token_ids) == r.prompt


def test_token_ids_row(tmp_path, tok):
    [r] = _read(tmp_path, [{"prompt_token_ids": [1, 2, 257]}], tok)
    assert isinstance(r, Request)
    assert r.prompt_token_ids == [1, 2, 257] and r.prompt is None


def test_whitespace_prompt_allowed_if_it_encodes(tmp_path, tok):
    [r] = _read(tmp_path, [{"prompt": "   "}], tok)
    assert isinstance(r, Request) and len(r.prompt_token_ids) == 4


def test_unicode_line_separator_inside_string_is_not_a_row_break(tmp_path, tok):
    [r] = _read(tmp_path, [json.dumps({"prompt": "a\u2028b"}, ensure_ascii=False)], tok)
    assert isinstance(r, Request) and r.prompt == "a\u2028b"


def test_utf8_bom_on_first_line(tmp_path, tok):
    [r] = _read(tmp_path, [b"\xef\xbb\xbf" + b'{"prompt": "x"}'], tok)
    assert isinstance(r, Request)


# ---------- ids, numbering, blank lines ----------

def test_line_numbers_and_indexes_with_blank_lines(tmp_path, tok):
    lines = ["", {"prompt": "a"}, "   ", "\t", {"prompt_token_ids": [1]}, "", "{bad", {"id": 0, "prompt": "b"}]
    out = _read(tmp_path, lines, tok)
    assert [o.index for o in out] == [0, 1, 2, 3]
    assert [o.id for o in out] == [2, 5, 7, 0]  # default id = 1-based physical line number
    assert isinstance(out[2], ErrorRow) and out[2].type == "invalid_json"
    assert out[2].message.startswith("line 7: ")


def test_crlf_line_endings(tmp_path, tok):
    out = _read(tmp_path, [b'{"prompt": "a"}\r', b"\r", b'{"prompt": "b"}\r'], tok)
    assert [o.id for o in out] == [1, 3] and all(isinstance(o, Request) for o in out)


@pytest.mark.parametrize("rid", ["x", 7, 1.5, True, None])
def test_scalar_ids_kept(tmp_path, tok, rid):
    [r] = _read(tmp_path, [{"id": rid, "prompt_token_ids": [1]}], tok)
    assert isinstance(r, Request) and r.id == rid and type(r.id) is type(rid)


@pytest.mark.parametrize("rid", [{"a": 1}, [1, 2]])
def test_invalid_id(tmp_path, tok, rid):
    e = _one_error(tmp_path, {"id": rid, "prompt": "x"}, tok)
    assert e.type == "invalid_id" and e.id == 1


def test_error_row_uses_row_id_when_parsed(tmp_path, tok):
    e = _one_error(tmp_path, {"id": "q9", "prompt": 5}, tok)
    assert e.type == "invalid_prompt" and e.id == "q9"


# ---------- error kinds ----------

def test_invalid_utf8(tmp_path, tok):
    out = _read(tmp_path, [{"prompt": "ok"}, b'{"prompt": "\xff\xfe"}', {"prompt": "ok"}], tok)
    assert isinstance(out[1], ErrorRow) and out[1].type == "invalid_utf8"
    assert out[1].id == 2 and out[1].message.startswith("line 2: ")
    assert isinstance(out[0], Request) and isinstance(out[2], Request)


@pytest.mark.parametrize("line", ["{not json", "[1, 2]", '"just a string"', "42", "null",
                                  '{"prompt": "x", "sampling": {"temperature": NaN}}'])
def test_invalid_json(tmp_path, tok, line):
    assert _one_error(tmp_path, [line], tok).type == "invalid_json"


def test_missing_prompt(tmp_path, tok):
    e = _one_error(tmp_path, {"id": 3, "text": "x"}, tok)
    assert e.type == "missing_prompt" and e.id == 3 and "prompt_token_ids" in e.message


def test_ambiguous_prompt(tmp_path, tok):
    e = _one_error(tmp_path, {"prompt": "x", "prompt_token_ids": [1]}, tok)
    assert e.type == "ambiguous_prompt"


@pytest.mark.parametrize("row", [{"prompt": ""}, {"messages": []}, {"prompt_token_ids": []}])
def test_empty_prompt(tmp_path, tok, row):
    assert _one_error(tmp_path, row, tok).type == "empty_prompt"


def test_empty_after_encoding(tmp_path):
    class NoTokens:  # a tokenizer that encodes whitespace to nothing
        chat_template = None

        def encode(self, text, add_special_tokens=True):
            return [ord(c) for c in text.strip()]

    e = _one_error(tmp_path, {"prompt": "  "}, NoTokens())
    assert e.type == "empty_prompt" and "0 tokens" in e.message


@pytest.mark.parametrize("row", [
    {"prompt": 5}, {"prompt": ["a"]}, {"prompt": None},
    {"prompt_token_ids": "1 2"}, {"prompt_token_ids": [1, "2"]}, {"prompt_token_ids": [1, 2.0]},
    {"prompt_token_ids": [1, True]},
    {"messages": "hi"}, {"messages": [{"role": "user"}]}, {"messages": [{"content": "x"}]},
    {"messages": ["hi"]}, {"messages": [{"role": "user", "content": 3}]},
    {"messages": [{"role": "tool", "content": "x"}]},  # rejected by the template itself
])
def test_invalid_prompt(tmp_path, tok, row):
    assert _one_error(tmp_path, row, tok).type == "invalid_prompt"


@pytest.mark.parametrize("bad", [-1, VOCAB, 10**30])
def test_invalid_token_id(tmp_path, tok, bad):
    e = _one_error(tmp_path, {"prompt_token_ids": [1, bad, 2]}, tok)
    assert e.type == "invalid_token_id" and str(bad) in e.message and str(VOCAB) in e.message


def test_logit_bias_token_ids_are_checked_against_the_vocabulary(tmp_path, tok):
    [ok] = _read(tmp_path, [{"prompt": "x", "sampling": {"logit_bias": {str(VOCAB - 1): -100}}}], tok)
    assert ok.sampling.logit_bias == ((VOCAB - 1, -100.0),)
    e = _one_error(tmp_path, {"prompt": "x", "sampling": {"logit_bias": {str(VOCAB): 5}}}, tok)
    assert e.type == "invalid_token_id" and f"logit_bias names token id {VOCAB}" in e.message


def test_prompt_too_long(tmp_path, tok):
    ok = _read(tmp_path, [{"prompt_token_ids": [1] * 7}], tok, max_model_len=8)
    assert isinstance(ok[0], Request)
    e = _one_error(tmp_path, {"prompt_token_ids": [1] * 8}, tok, max_model_len=8)
    assert e.type == "prompt_too_long"
    assert "8 tokens" in e.message and "max_model_len is 8" in e.message and "shorten" in e.message
    e = _one_error(tmp_path, {"prompt": "x" * 10}, tok, max_model_len=8)  # 11 tokens with BOS
    assert e.type == "prompt_too_long" and "11 tokens" in e.message and "truncate_prompt_tokens" in e.message


def test_truncate_prompt_tokens_keeps_the_end(tmp_path, tok):
    rows = [{"prompt_token_ids": list(range(10, 22)), "sampling": {"truncate_prompt_tokens": 5}},
            {"prompt_token_ids": list(range(10, 22)), "sampling": {"truncate_prompt_tokens": -1}},
            {"prompt_token_ids": [3, 4], "sampling": {"truncate_prompt_tokens": 5}},  # shorter: untouched
            {"prompt": "x" * 10, "sampling": {"truncate_prompt_tokens": 4}},
            {"prompt_token_ids": list(range(10, 22)), "sampling": {"truncate_prompt_tokens": 9}}]  # still too long
    out = _read(tmp_path, rows, tok, max_model_len=8)
    assert out[0].prompt_token_ids == [17, 18, 19, 20, 21]
    assert out[1].prompt_token_ids == list(range(15, 22))  # max_model_len 8 leaves 7 for the prompt
    assert out[2].prompt_token_ids == [3, 4]
    assert len(out[3].prompt_token_ids) == 4 and out[3].prompt is None  # no longer the row's text
    assert out[4].type == "prompt_too_long"
    e = _one_error(tmp_path, {"prompt": "x", "sampling": {"truncate_prompt_tokens": -2}}, tok)
    assert e.type == "invalid_sampling" and "truncate_prompt_tokens" in e.message


# ---------- sampling ----------

def test_sampling_overrides_merge_with_defaults(tmp_path, tok):
    defaults = SamplingParams(temperature=0.7, top_p=0.9, max_tokens=32, stop=("END",))
    [r] = _read(tmp_path, [{"prompt": "x", "sampling": {"temperature": 0, "max_tokens": 5, "stop": "\n"}}],
                tok, defaults=defaults)
    assert isinstance(r, Request)
    assert r.sampling == defaults.replace(temperature=0.0, max_tokens=5, stop=("\n",))
    [r] = _read(tmp_path, [{"prompt": "x"}], tok, defaults=defaults)
    assert r.sampling is defaults


@pytest.mark.parametrize("sampling", [{"temperature": -1}, {"nope": 1}, "hot", {"max_tokens": 1.5},
                                      {"presence_penalty": 3}, {"logit_bias": {"5": 101}}, {"logit_bias": {"x": 1}},
                                      {"logit_bias": [5, 1]}, {"max_tokens": 0}])
def test_invalid_sampling(tmp_path, tok, sampling):
    e = _one_error(tmp_path, {"id": "s", "prompt": "x", "sampling": sampling}, tok)
    assert e.type == "invalid_sampling" and e.id == "s"


# ---------- tokenizer=None ----------

def test_no_tokenizer(tmp_path):
    out = _read(tmp_path, [{"prompt": "x"}, {"messages": [{"role": "user", "content": "x"}]},
                           {"prompt_token_ids": [5, 6]}, {"prompt_token_ids": [5], "sampling": {"stop": "\n"}}],
                None)
    assert [o.type for o in out[:2]] == ["no_tokenizer", "no_tokenizer"]
    assert "prompt_token_ids" in out[0].message and "model.tokenizer" in out[0].message
    assert isinstance(out[2], Request) and out[2].prompt_token_ids == [5, 6]
    # stop strings are matched on text: without a tokenizer they could never fire, so the row is refused
    assert out[3].type == "no_tokenizer" and "stop_token_ids" in out[3].message


def test_no_chat_template(tmp_path):
    t = _build_tokenizer()
    t.chat_template = None
    e = _one_error(tmp_path, {"messages": [{"role": "user", "content": "x"}]}, t)
    assert e.type == "no_chat_template"


# ---------- unknown fields, robustness ----------

def test_unknown_fields_warned_once(tmp_path, tok, caplog):
    with caplog.at_level(logging.WARNING, logger="spmd_infer.data.reader"):
        out = _read(tmp_path, [{"prompt": "a", "meta": 1}, {"prompt": "b", "extra": 2}], tok)
    assert all(isinstance(o, Request) for o in out)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "meta" in warnings[0].getMessage()


def test_tokenizer_crash_becomes_error_row(tmp_path):
    class Broken:
        def encode(self, text, add_special_tokens=True):
            raise RuntimeError("boom")

    out = _read(tmp_path, [{"id": "z", "prompt": "x"}, {"prompt_token_ids": [1]}], Broken())
    assert isinstance(out[0], ErrorRow) and out[0].type == "internal_error" and out[0].id == "z"
    assert isinstance(out[1], Request) and out[1].index == 1


def test_streams_lazily(tmp_path, tok):
    # Rows come out as lines are read, not after the whole file is loaded: a line appended
    # after the first row was yielded is still picked up.
    path = _write(tmp_path, [{"prompt": "a"}])
    it = read_requests(path, tok, DEFAULTS, 64, VOCAB)
    assert isinstance(next(it), Request)
    with open(path, "ab") as f:
        f.write(b'{"prompt_token_ids": [9]}\n')
    [r] = list(it)
    assert r.prompt_token_ids == [9] and r.index == 1 and r.id == 2
