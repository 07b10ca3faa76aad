"""OpenAI batch rows in and out (data/openai_batch.py), n > 1 row grouping (data/completions.py), no launch."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from spmd_infer.data.completions import OutputRows
from spmd_infer.data.openai_batch import detect_format, error_row, to_native
from spmd_infer.data.reader import read_requests
from spmd_infer.data.request import ErrorRow, Request
from spmd_infer.parallel.dims import ConfigError
from spmd_infer.sampling_params import InvalidRequest, SamplingParams


def _row(url="/v1/completions", **body):
    return {"custom_id": "c1", "method": "POST", "url": url, "body": body}


def test_detect_format(tmp_path):
    ours, theirs, broken = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    ours.write_text('{"id": 1, "prompt": "x"}\n')
    theirs.write_text("\n" + json.dumps(_row(prompt="x")) + "\n")
    broken.write_text("{nope\n")
    assert [detect_format(p, "auto") for p in (ours, theirs, broken)] == ["jsonl", "openai", "jsonl"]
    assert detect_format(ours, "openai") == "openai"
    with pytest.raises(ConfigError, match="data.format='csv' must be one of auto, jsonl, openai"):
        detect_format(ours, "csv")


def test_body_fields_map_to_sampling():
    native, api = to_native(_row("/v1/chat/completions", model="m", messages=[
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "there"}]}],
        max_completion_tokens=7, max_tokens=99, temperature=0.5, top_p=0.9, seed=3, stop=["\n"], n=2,
        logprobs=True, top_logprobs=3, top_k=20, user="ignored", presence_penalty=0.5, frequency_penalty=-0.25,
        logit_bias={"50256": -100}, response_format={"type": "text"}, prompt_logprobs=2), lineno=1)
    assert native == {"id": "c1", "messages": [{"role": "system", "content": "be brief"},
                                               {"role": "user", "content": "hi\nthere"}],
                      "sampling": {"temperature": 0.5, "top_p": 0.9, "seed": 3, "stop": ["\n"], "n": 2, "top_k": 20,
                                   "presence_penalty": 0.5, "frequency_penalty": -0.25,
                                   "logit_bias": {"50256": -100}, "prompt_logprobs": 2, "max_tokens": 7,
                                   "logprobs": 3}}
    assert api["url"] == "/v1/chat/completions" and api["model"] == "m" and api["top_logprobs"] == 3

    native, api = to_native(_row(prompt=[[5, 6, 7]], max_tokens=4, logprobs=0, temperature=None), lineno=2)
    assert native == {"id": "c1", "prompt_token_ids": [5, 6, 7], "sampling": {"max_tokens": 4, "logprobs": 1}}
    assert api["top_logprobs"] == 0  # the chosen token's logprob only
    assert to_native(_row(prompt="text", logprobs=None), 3)[0]["prompt"] == "text"
    assert "logprobs" not in to_native(_row("/v1/chat/completions", messages=[{"role": "user", "content": "x"}],
                                            logprobs=False, top_logprobs=5), 4)[0]["sampling"]


@pytest.mark.parametrize("row,kind,words", [
    ({"method": "POST", "url": "/v1/completions", "body": {"prompt": "x"}}, "invalid_id", "custom_id"),
    (_row("/v1/embeddings", input="x"), "unsupported_url", "/v1/chat/completions"),
    ({**_row(prompt="x"), "method": "GET"}, "invalid_request", "POST"),
    ({**_row(), "body": "x"}, "invalid_request", '"body" must be a JSON object'),
    (_row(prompt="x", stream=True), "unsupported_field", "stream"),
    (_row("/v1/chat/completions", messages=[{"role": "user", "content": "x"}], echo=True), "unsupported_field",
     "echo"),
    (_row(prompt="x", echo="yes"), "invalid_request", "echo"),
    (_row(prompt="x", response_format={"type": "json_object"}), "unsupported_field", "response_format"),
    (_row(prompt="x", guided_choice=["a", "b"]), "unsupported_field", "guided_choice"),
    (_row(prompt=["a", "b"]), "invalid_prompt", "one prompt per row"),
    (_row(), "missing_prompt", '"prompt"'),
    (_row("/v1/chat/completions"), "missing_prompt", '"messages"'),
    (_row("/v1/chat/completions", messages=[{"role": "user", "content": [{"type": "image_url"}]}]),
     "invalid_prompt", "only text parts"),
])
def test_bad_rows_raise_with_line(row, kind, words):
    with pytest.raises(InvalidRequest) as e:
        to_native(row, lineno=9)
    assert e.value.kind == kind and words in str(e.value) and str(e.value).startswith("line 9:")


def test_reader_turns_rows_into_requests_or_openai_errors(tmp_path):
    path = tmp_path / "batch.jsonl"
    rows = [_row(prompt=[3, 4], max_tokens=2, best_of=1), {"custom_id": "c2", "url": "/v1/completions",
                                                           "body": {"prompt": [1], "temperature": -1}},
            _row(prompt="needs a tokenizer"), {"url": "/v1/completions", "body": {"prompt": [1]}}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    items = list(read_requests(str(path), None, SamplingParams(), 64, 100, "openai"))
    ok, *errors = items
    assert isinstance(ok, Request) and ok.id == "c1" and ok.sampling.max_tokens == 2
    assert ok.api["url"] == "/v1/completions"
    assert [(e.id, e.type) for e in errors] == [("c2", "invalid_sampling"), ("c1", "no_tokenizer"),
                                               (4, "invalid_id"), (5, "invalid_json")]
    answer = error_row(errors[0])
    assert answer["custom_id"] == "c2" and answer["response"]["status_code"] == 400
    assert answer["error"]["code"] == "invalid_sampling" and 'the row\'s "body"' in answer["error"]["message"]
    assert answer["response"]["body"]["error"]["type"] == "invalid_request_error"
    assert error_row(errors[2])["custom_id"] is None  # no usable custom_id: null, as the line number is no id


class _Tok:
    def decode(self, ids, skip_special_tokens=False):
        return "".join(f"<{i}>" for i in ids)


def _seq(request, index, out, reason="stop", logprobs=()):
    return SimpleNamespace(request=request, sampling=request.sampling, sample_index=index, id=request.id,
                           index=request.index, output_ids=out, text="".join(f"<{i}>" for i in out),
                           finish_reason=reason, num_prompt_tokens=len(request.prompt_token_ids),
                           num_output_tokens=len(out), logprobs=list(logprobs))


def test_chat_answer_with_n_and_logprobs():
    api = {"url": "/v1/chat/completions", "model": None, "top_logprobs": 1, "return_token_ids": False}
    req = Request(index=4, id="c9", prompt_token_ids=[1, 2, 3], sampling=SamplingParams(n=2, logprobs=1), api=api)
    rows = OutputRows(openai=True, tokenizer=_Tok(), model_name="my-model")
    # Completion 1 finishes first; the row comes when the last one does, choices in completion order.
    assert rows.finished(_seq(req, 1, [7], logprobs=[{7: -0.1}])) is None
    row = rows.finished(_seq(req, 0, [5, 6], "length", logprobs=[{5: -0.5, 8: -0.2}, {6: -0.3}]))
    body = row["response"]["body"]
    assert row["custom_id"] == "c9" and row["error"] is None and row["response"]["status_code"] == 200
    assert body["object"] == "chat.completion" and body["model"] == "my-model"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    first, second = body["choices"]
    assert first["index"] == 0 and first["message"] == {"role": "assistant", "content": "<5><6>"}
    assert first["finish_reason"] == "length" and "token_ids" not in first
    lp = first["logprobs"]["content"][0]
    assert lp["token"] == "<5>" and lp["logprob"] == -0.5 and lp["bytes"] == list(b"<5>")
    assert [t["token"] for t in lp["top_logprobs"]] == ["<8>"]  # the top-1, not the chosen token
    assert second["index"] == 1 and second["message"]["content"] == "<7>"


def test_completion_answer_without_tokenizer_has_token_ids():
    api = {"url": "/v1/completions", "model": "m", "top_logprobs": None, "return_token_ids": False}
    req = Request(index=0, id="c1", prompt_token_ids=[1], sampling=SamplingParams(), api=api)
    seq = _seq(req, 0, [3, 4])
    seq.text = None
    body = OutputRows(True, None, "x").finished(seq)["response"]["body"]
    assert body["object"] == "text_completion" and body["model"] == "m"
    assert body["choices"] == [{"index": 0, "text": None, "logprobs": None, "finish_reason": "stop",
                                "token_ids": [3, 4]}]


def test_native_rows_keep_n1_shape_and_list_outputs_for_n():
    req = Request(index=0, id="a", prompt_token_ids=[1, 2], sampling=SamplingParams())
    assert OutputRows(False, None, "m").finished(_seq(req, 0, [3])) == {
        "id": "a", "text": "<3>", "token_ids": [3], "finish_reason": "stop", "num_prompt_tokens": 2,
        "num_output_tokens": 1}
    req = Request(index=1, id="b", prompt_token_ids=[1, 2], sampling=SamplingParams(n=2))
    rows = OutputRows(False, None, "m")
    assert rows.finished(_seq(req, 0, [3])) is None
    row = rows.finished(_seq(req, 1, [4, 5], "length"))
    assert row == {"id": "b", "num_prompt_tokens": 2, "num_output_tokens": 3, "outputs": [
        {"index": 0, "text": "<3>", "token_ids": [3], "finish_reason": "stop", "num_output_tokens": 1},
        {"index": 1, "text": "<4><5>", "token_ids": [4, 5], "finish_reason": "length", "num_output_tokens": 2}]}
    assert OutputRows(True, None, "m").error(ErrorRow(0, 7, "invalid_json", "line 1: bad"))["custom_id"] is None
