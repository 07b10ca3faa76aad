"""OpenAI Batch API files (also what `vllm run-batch` reads and writes): rows in, answers out in kind.

Input row:  {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}
Output row: {"id": "batch_req_0", "custom_id": "r1", "response": {"status_code": 200, "request_id": ...,
             "body": <chat.completion or text_completion object>}, "error": null}
A row that cannot run answers with status_code 400, an OpenAI error body and "error" set.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, NoReturn, Optional

from ..parallel.dims import ConfigError
from ..sampling_params import InvalidRequest
from .logprob_json import entries_json
from .request import ErrorRow, Request

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
FORMATS = ("auto", "jsonl", "openai")
# Body fields that map one to one onto our sampling fields (the last eight are vLLM's extensions).
SAME_NAME = ("temperature", "top_p", "seed", "stop", "n", "presence_penalty", "frequency_penalty", "logit_bias",
             "top_k", "min_p", "min_tokens", "ignore_eos", "stop_token_ids", "repetition_penalty", "prompt_logprobs",
             "truncate_prompt_tokens")
# Fields we cannot honour, with the value that means "not used"; any other value makes the row an error.
# Constrained output (response_format, vLLM's guided_*) is among them: ignoring it would return unconstrained text.
UNSUPPORTED = {"stream": False, "suffix": None, "best_of": 1, "tools": None, "functions": None,
               "response_format": {"type": "text"}, "guided_json": None, "guided_regex": None, "guided_choice": None,
               "guided_grammar": None}


def detect_format(path: Any, configured: str) -> str:
    """"jsonl" or "openai": as configured, or for "auto" from the first non-blank row of `path`."""
    if configured not in FORMATS:
        raise ConfigError(f"data.format={configured!r} must be one of {', '.join(FORMATS)}")
    if configured != "auto":
        return configured
    with open(path, "rb") as f:
        for raw in f:
            if raw.strip():
                try:
                    row = json.loads(raw.decode("utf-8-sig"))
                except ValueError:
                    return "jsonl"  # the reader reports the broken row
                return "openai" if isinstance(row, dict) and "custom_id" in row and "body" in row else "jsonl"
    return "jsonl"


def custom_id(row: dict, lineno: int) -> Any:
    """The id that error rows carry: the row's custom_id, or its line number when that is unusable."""
    cid = row.get("custom_id")
    return cid if isinstance(cid, str) and cid else lineno


def to_native(row: dict, lineno: int) -> tuple[dict, dict]:
    """One OpenAI batch row -> (our row: id, prompt/messages/prompt_token_ids, sampling; what its answer needs).

    Raises InvalidRequest with a message naming the line; the reader turns it into an error row.
    """
    def bad(msg: str, kind: str = "invalid_request") -> NoReturn:
        raise InvalidRequest(kind, f"line {lineno}: {msg}")

    cid = row.get("custom_id")
    if not isinstance(cid, str) or not cid:
        bad(f'"custom_id" must be a non-empty string, got {cid!r:.50}', "invalid_id")
    if row.get("method", "POST") != "POST":
        bad(f'"method" must be "POST", got {row.get("method")!r:.50}')
    url = row.get("url")
    if url not in (CHAT, COMPLETIONS):
        bad(f'"url" must be "{CHAT}" or "{COMPLETIONS}", got {url!r:.80}', "unsupported_url")
    body = row.get("body")
    if not isinstance(body, dict):
        bad(f'"body" must be a JSON object, got {type(body).__name__}')
    for key, unused in UNSUPPORTED.items():
        value = body.get(key)
        if value is not None and value != unused and not (key == "best_of" and value == body.get("n", 1)):
            bad(f'body "{key}"={value!r:.50} is not supported; drop it', "unsupported_field")
    echo = body.get("echo")
    if echo not in (None, False, True):
        bad(f'body "echo" must be true or false, got {echo!r:.50}')
    if echo and url == CHAT:
        bad(f'body "echo" is supported on {COMPLETIONS} only; drop it', "unsupported_field")
    native: dict[str, Any] = {"id": cid}
    if url == CHAT:
        native["messages"] = _messages(body.get("messages"), bad)
    else:
        native.update(_prompt(body.get("prompt"), bad))
    sampling, api = _sampling(body, url)
    if echo and isinstance(sampling.get("logprobs"), int):
        # The echoed prompt carries its tokens' logprobs too: the engine scores the prompt.
        sampling["prompt_logprobs"] = max(sampling.get("prompt_logprobs") or 0, sampling["logprobs"])
    native["sampling"] = sampling
    api.update(url=url, model=body.get("model"), return_token_ids=body.get("return_token_ids") is True,
               echo=bool(echo))
    return native, api


def _messages(messages: Any, bad: Callable[..., NoReturn]) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        bad('a chat body needs "messages": a non-empty list of {"role": ..., "content": ...}', "missing_prompt")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            bad(f"messages[{i}] must be an object")
        content = m.get("content")
        if isinstance(content, list):
            # Content parts: text only (this is a text model); vLLM joins them with newlines too.
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                bad(f"messages[{i}].content: only text parts are supported", "invalid_prompt")
            content = "\n".join(p["text"] for p in content)
        out.append({**m, "content": content})
    return out


def _prompt(prompt: Any, bad: Callable[..., NoReturn]) -> dict:
    # One prompt per row; a list holding exactly one prompt is accepted as that prompt.
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return {"prompt": prompt}
    if isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return {"prompt_token_ids": prompt}
    if prompt is None:
        bad('a completions body needs "prompt": a string or a list of token ids', "missing_prompt")
    bad('"prompt" must be one string or one list of token ids (one prompt per row)', "invalid_prompt")


def _sampling(body: dict, url: str) -> tuple[dict, dict]:
    """Our sampling overrides from the body (null means "default"), and the logprobs the answer shows."""
    s = {k: body[k] for k in SAME_NAME if body.get(k) is not None}
    max_tokens = body.get("max_completion_tokens") if url == CHAT else None
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        s["max_tokens"] = max_tokens
    top = None  # top alternatives per token in the answer; None: no logprobs asked for
    if url == CHAT and body.get("logprobs") is True:
        top = body.get("top_logprobs") or 0
    elif url == COMPLETIONS and body.get("logprobs") is not None:
        top = body["logprobs"]
    if top is not None:
        # The engine returns top-k plus the chosen token; k >= 1 also covers "chosen token only".
        s["logprobs"] = max(1, top) if isinstance(top, int) and not isinstance(top, bool) else top
    return s, {"top_logprobs": top}


def error_row(err: ErrorRow) -> dict:
    """An input row that cannot run, answered as the Batch API answers a bad request."""
    # The reader names our rows' "sampling" object; in this format the fields come from the body.
    text = err.message.replace('the row\'s "sampling" object', 'the row\'s "body"')
    message = {"message": text, "type": "invalid_request_error", "param": None, "code": err.type}
    return {"id": f"batch_req_{err.index}", "custom_id": err.id if isinstance(err.id, str) else None,
            "response": {"status_code": 400, "request_id": f"req_{err.index}", "body": {"error": message}},
            "error": {"code": err.type, "message": text}}


def response_row(request: Request, seqs: list, tokenizer: Optional[Any], default_model: str) -> dict:
    """The answer to one request, its n completions in `seqs` (ordered by completion number)."""
    api = request.api
    chat = api["url"] == CHAT
    choices = []
    echoed = seqs[0] if api.get("echo") else None  # completion 0 scored the prompt (Sequence)
    prompt_text = _prompt_text(request, echoed, tokenizer) if echoed is not None else ""
    for s in seqs:
        choice: dict[str, Any] = {"index": s.sample_index}
        if chat:
            choice["message"] = {"role": "assistant", "content": s.text}
        else:
            choice["text"] = None if prompt_text is None or s.text is None else prompt_text + s.text
        choice["logprobs"] = None if api["top_logprobs"] is None else _logprobs(s, api["top_logprobs"], tokenizer,
                                                                                chat, echoed)
        choice["finish_reason"] = s.finish_reason
        if tokenizer is None or api["return_token_ids"]:
            choice["token_ids"] = s.output_ids  # vLLM's extension; the only output without a tokenizer
        if s.sampling.prompt_logprobs and not chat:  # vLLM's extension: per choice on completions
            choice["prompt_logprobs"] = entries_json(seqs[0].prompt_logprobs)
        choices.append(choice)
    generated = sum(s.num_output_tokens for s in seqs)
    prompt = seqs[0].num_prompt_tokens
    body = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{request.index}",
            "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
            "model": api["model"] or default_model, "choices": choices,
            "usage": {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated}}
    if chat and seqs[0].sampling.prompt_logprobs:  # vLLM's extension: once per answer on chat completions
        body["prompt_logprobs"] = entries_json(seqs[0].prompt_logprobs)
    return {"id": f"batch_req_{request.index}", "custom_id": request.id,
            "response": {"status_code": 200, "request_id": f"req_{request.index}", "body": body}, "error": None}


def _prompt_text(request: Request, echoed: Any, tokenizer: Optional[Any]) -> Optional[str]:
    """The prompt as an echo shows it: its text, or its token ids decoded; None without a tokenizer."""
    if request.prompt is not None:
        return request.prompt
    if tokenizer is None:
        return None
    return tokenizer.decode(echoed.token_ids[:echoed.num_prompt_tokens])


def _logprobs(seq: Any, k: int, tokenizer: Optional[Any], chat: bool, echoed: Any = None) -> dict:
    """The choice's logprobs object; `echoed` (completions' echo): the sequence whose prompt scores lead it."""
    def text(t: int) -> str:
        # Each token on its own, as vLLM shows them; token ids when there is no tokenizer.
        return tokenizer.decode([t]) if tokenizer is not None else f"token_id:{t}"

    chosen, tops = [], []
    if echoed is not None:
        prompt = echoed.token_ids[:echoed.num_prompt_tokens]
        for token, entry in zip(prompt, echoed.prompt_logprobs):
            # The first prompt token has no logprob (None), as in OpenAI's echo.
            chosen.append((token, None if entry is None else entry[token]))
            tops.append(None if entry is None else sorted(entry.items(), key=lambda kv: -kv[1])[:k])
    for token, entry in zip(seq.output_ids, seq.logprobs):
        chosen.append((token, entry[token]))
        # `entry` holds the top-k plus the chosen token; the k best are the top-k.
        tops.append(sorted(entry.items(), key=lambda kv: -kv[1])[:k])
    if chat:
        def item(t: int, lp: float) -> dict:
            s = text(t)
            return {"token": s, "logprob": lp, "bytes": list(s.encode("utf-8"))}
        return {"content": [{**item(t, lp), "top_logprobs": [item(a, b) for a, b in top]}
                            for (t, lp), top in zip(chosen, tops)]}
    tokens = [text(t) for t, _ in chosen]
    offsets, pos = [], 0
    for s in tokens:
        offsets.append(pos)
        pos += len(s)
    return {"tokens": tokens, "token_logprobs": [lp for _, lp in chosen],
            "top_logprobs": [None if top is None else {text(a): b for a, b in top} for top in tops],
            "text_offset": offsets}
