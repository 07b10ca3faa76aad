"""n > 1, logprobs against transformers, generation_config.json defaults and OpenAI batch files, end to end.

All jobs run in one single-rank launch (process start-up dominates CPU test time).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from omegaconf import OmegaConf

from spmd_infer.config import SamplingConfig
from spmd_infer.model_defaults import generation_defaults
from spmd_infer.sampling_params import SamplingParams
from support.launch import REPO, torchrun
from support.tiny_models import MAX_NEW, read_output

TOP = 5


def test_generation_config_fills_only_unset_fields(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps(
        {"temperature": 0.6, "top_p": 0.9, "top_k": 20, "do_sample": True, "max_new_tokens": 9999, "eos_token_id": 2}))
    defaults = generation_defaults(tmp_path)
    assert defaults == {"temperature": 0.6, "top_p": 0.9, "top_k": 20}
    schema = OmegaConf.structured(SamplingConfig)
    p = SamplingParams.from_config(schema, defaults)
    assert (p.temperature, p.top_p, p.top_k, p.max_tokens) == (0.6, 0.9, 20, 256)
    # A value given explicitly wins, even one equal to the schema's own default.
    p = SamplingParams.from_config(OmegaConf.merge(schema, {"temperature": 1.0, "top_k": 0}), defaults)
    assert (p.temperature, p.top_p, p.top_k) == (1.0, 0.9, 0)
    assert SamplingParams.from_config(schema, generation_defaults(tmp_path / "none")) == SamplingParams()


def _openai_rows(prompts: list[list[int]]) -> list[dict]:
    rows = [{"custom_id": f"g{i}", "method": "POST", "url": "/v1/completions",
             "body": {"model": "tiny", "prompt": ids, "max_tokens": MAX_NEW, "temperature": 0}}
            for i, ids in enumerate(prompts)]
    rows.append({"custom_id": "two", "method": "POST", "url": "/v1/completions",
                 "body": {"prompt": prompts[0], "max_tokens": 3, "n": 2, "temperature": 1.0, "seed": 1, "logprobs": 2}})
    rows.append({"custom_id": "bad", "method": "POST", "url": "/v1/completions", "body": {"prompt": [1], "top_p": 7}})
    return rows


@pytest.fixture(scope="module")
def runs(tiny, tmp_path_factory):
    """Every job of this module in one launch; returns the folder holding their outputs."""
    out = tmp_path_factory.mktemp("extras")
    m, i = tiny["models"], tiny["inputs"]
    gen_model = out / "llama-gen"
    shutil.copytree(m["llama"], gen_model)
    (gen_model / "generation_config.json").write_text(json.dumps({"bos_token_id": 0, "eos_token_id": 1,
                                                                   "temperature": 0.0}))
    batch = out / "batch.jsonl"
    batch.write_text("\n".join(json.dumps(r) for r in _openai_rows(tiny["sets"]["mixed"])) + "\n")
    chat = out / "chat.jsonl"
    chat.write_text(json.dumps({"custom_id": "hi", "method": "POST", "url": "/v1/chat/completions", "body": {
        "messages": [{"role": "user", "content": "What is the capital of France?"}], "max_completion_tokens": 4,
        "logprobs": True, "top_logprobs": 2}}) + "\n")
    sampled = ["sampling.temperature=0.9", "sampling.seed=5", f"sampling.max_tokens={MAX_NEW}"]
    greedy = ["sampling.temperature=0", f"sampling.max_tokens={MAX_NEW}"]
    jobs = {
        "logprobs": [f"model.path={m['llama']}", f"data.input={i['mixed']}", f"sampling.logprobs={TOP}", *greedy],
        "n3": [f"model.path={m['llama']}", f"data.input={i['mixed']}", "sampling.n=3", *sampled],
        "n1": [f"model.path={m['llama']}", f"data.input={i['mixed']}", *sampled],
        "gen-default": [f"model.path={gen_model}", f"data.input={i['mixed']}", f"sampling.max_tokens={MAX_NEW}"],
        "gen-override": [f"model.path={gen_model}", f"data.input={i['mixed']}", *sampled[:1],
                         f"sampling.max_tokens={MAX_NEW}", "sampling.temperature=1.0"],
        "openai": [f"model.path={m['llama']}", f"data.input={batch}"],
        "openai-chat": [f"data.input={chat}", "data.format=openai"],  # the demo model: it has a chat template
    }
    spec = [{"name": n, "overrides": o + [f"data.output={out / n}.jsonl"]} for n, o in jobs.items()]
    (out / "spec.json").write_text(json.dumps(spec))
    proc = torchrun(1, [str(REPO / "tests" / "support" / "multi_job.py"), str(out / "spec.json")], timeout=400,
                    env={"SPMD_INFER_CACHE": str(out / "cache")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out


def test_logprobs_match_transformers_scores(tiny, runs):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny["models"]["llama"], dtype=torch.float32).eval()
    rows = read_output(runs / "logprobs.jsonl")
    for ids, row in zip(tiny["sets"]["mixed"], rows):
        with torch.no_grad():
            gen = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=MAX_NEW, eos_token_id=1,
                                 pad_token_id=1, attention_mask=torch.ones(1, len(ids)), output_scores=True,
                                 return_dict_in_generate=True)
        assert gen.sequences[0, len(ids):].tolist()[:len(row["token_ids"])] == row["token_ids"]
        assert len(row["logprobs"]) == len(row["token_ids"])
        for scores, ours in zip(gen.scores, row["logprobs"]):
            ref = scores[0].log_softmax(-1).topk(TOP)
            got = sorted(((int(t), lp) for t, lp in ours.items()), key=lambda kv: -kv[1])
            assert len(got) == TOP  # greedy: the chosen token is the top-1, so no extra entry
            assert torch.allclose(torch.tensor([lp for _, lp in got]), ref.values, atol=1e-4)
            for j, (tok, _) in enumerate(got):
                # Ids must agree, except where two values tie within the tolerance and may swap places.
                tie = any(abs(float(ref.values[j]) - float(ref.values[k])) < 1e-4 for k in (j - 1, j + 1) if 0 <= k < TOP)
                assert tok == int(ref.indices[j]) or tie


def test_n_completions_each_with_its_own_generator(runs):
    many, single = read_output(runs / "n3.jsonl"), read_output(runs / "n1.jsonl")
    for row, one in zip(many, single):
        outs = row["outputs"]
        assert [o["index"] for o in outs] == [0, 1, 2] and row["id"] == one["id"]
        assert row["num_output_tokens"] == sum(o["num_output_tokens"] for o in outs)
        assert outs[0]["token_ids"] == one["token_ids"]  # completion 0 keeps the n = 1 generator key
        assert "outputs" not in one and "token_ids" in one  # n = 1 rows keep their shape
    assert any(len({tuple(o["token_ids"]) for o in row["outputs"]}) > 1 for row in many), "completions identical"


def test_generation_config_defaults_unless_overridden(tiny, runs):
    greedy = tiny["refs"][("llama", "mixed")]
    assert [r["token_ids"] for r in read_output(runs / "gen-default.jsonl")] == greedy  # temperature 0 from the model
    assert [r["token_ids"] for r in read_output(runs / "gen-override.jsonl")] != greedy  # temperature=1.0 given


def test_openai_batch_file_end_to_end(tiny, runs):
    rows = read_output(runs / "openai.jsonl")
    prompts = tiny["sets"]["mixed"]
    assert [r["custom_id"] for r in rows] == [f"g{k}" for k in range(len(prompts))] + ["two", "bad"]
    for row, ref, ids in zip(rows, tiny["refs"][("llama", "mixed")], prompts):
        body = row["response"]["body"]
        assert row["error"] is None and row["response"]["status_code"] == 200
        assert body["object"] == "text_completion" and body["model"] == "tiny"
        assert body["choices"][0]["token_ids"] == ref  # no tokenizer: token ids, vLLM's extension
        assert body["usage"] == {"prompt_tokens": len(ids), "completion_tokens": len(ref),
                                 "total_tokens": len(ids) + len(ref)}
    two = rows[-2]["response"]["body"]["choices"]
    assert [c["index"] for c in two] == [0, 1]
    assert all(len(c["logprobs"]["tokens"]) == 3 and len(c["logprobs"]["top_logprobs"][0]) <= 2 for c in two)
    bad = rows[-1]
    assert bad["response"]["status_code"] == 400 and bad["error"]["code"] == "invalid_sampling"

    chat = read_output(runs / "openai-chat.jsonl")[0]["response"]["body"]
    assert chat["object"] == "chat.completion" and chat["id"].startswith("chatcmpl-")
    choice = chat["choices"][0]
    assert isinstance(choice["message"]["content"], str) and choice["message"]["role"] == "assistant"
    assert len(choice["logprobs"]["content"]) == chat["usage"]["completion_tokens"] <= 4
