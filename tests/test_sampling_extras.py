"""n > 1, logprobs against transformers, penalties, generation_config.json defaults and OpenAI batch files, end to
end.

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
from support.tiny_models import MAX_NEW, PENALTIES, penalized_greedy_reference, read_output

TOP = 5
OVP = "runtime.overlap_prefill=true"  # the default, named where a case compares it with SETTLED
SETTLED = "runtime.overlap_prefill=false"


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
    rows.append({"custom_id": "penalized", "method": "POST", "url": "/v1/completions",
                 "body": {"prompt": prompts[0], "max_tokens": MAX_NEW, "temperature": 0, "frequency_penalty": 0.7,
                          "presence_penalty": 0.5, "repetition_penalty": 1.3}})
    rows.append({"custom_id": "biased", "method": "POST", "url": "/v1/completions",
                 "body": {"prompt": prompts[0], "max_tokens": 4, "temperature": 0.8, "logit_bias": {"9": 100}}})
    rows.append({"custom_id": "scored", "method": "POST", "url": "/v1/completions",
                 "body": {"prompt": prompts[4], "max_tokens": 2, "temperature": 0, "prompt_logprobs": 1}})
    # Scoring as evaluation harnesses ask for it: the prompt echoed with its logprobs, nothing generated.
    rows.append({"custom_id": "echoed", "method": "POST", "url": "/v1/completions",
                 "body": {"prompt": prompts[1], "max_tokens": 0, "temperature": 0, "logprobs": 2, "echo": True}})
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
    first = tiny["refs"][("llama", "mixed")][0][0]  # the first prompt's first greedy token: a stop token below
    greedy = ["sampling.temperature=0", f"sampling.max_tokens={MAX_NEW}"]
    penalized = [f"sampling.{k}={v}" for k, v in PENALTIES.items()]
    jobs = {
        "logprobs": [f"model.path={m['llama']}", f"data.input={i['mixed']}", f"sampling.logprobs={TOP}", *greedy],
        "penalties": [f"model.path={m['llama']}", f"data.input={i['mixed']}", *greedy, *penalized],
        # Penalties counted on the device: steps in flight (the default), settled steps, more penalized sequences
        # than the count table's first rows (n = 3), and preemption by recompute in a small cache.
        "penalties-settled": [f"model.path={m['llama']}", f"data.input={i['mixed']}", *greedy, *penalized,
                              "runtime.overlap_steps=false"],
        "penalties-n3": [f"model.path={m['llama']}", f"data.input={i['mixed']}", *greedy, *penalized, "sampling.n=3"],
        "penalties-preempt": [f"model.path={m['llama']}", f"data.input={i['preempt']}", *greedy, *penalized,
                              "cache.block_size=4", "cache.num_blocks=8", "model.max_model_len=32"],
        # 18 sequences admitted a few at a time (16-token prefill chunks) between decode steps: a prefill step lends
        # decoding sequences' count rows to its new ones, and the next decode step rebuilds them from their token
        # ids, with steps in flight (session 23, instrumented: 8 rows lent and rebuilt).
        "penalties-n3-chunked": [f"model.path={m['llama']}", f"data.input={i['mixed']}", *greedy, *penalized,
                                 "sampling.n=3", "scheduler.max_num_batched_tokens=16", "scheduler.max_num_seqs=16"],
        "bias": [f"model.path={m['llama']}", f"data.input={i['mixed']}", *greedy, "++sampling.logit_bias={7:100}"],
        # Prompt scoring on requests sharing a 20-token prefix, one at a time, prefilled in 8-token chunks: the
        # prefix cache must not skip a scored prompt's tokens; then in a cache small enough to preempt.
        "prompt-lp": [f"model.path={m['llama']}", f"data.input={i['shared']}", *greedy, "sampling.prompt_logprobs=3",
                      "cache.block_size=4", "scheduler.max_num_seqs=1", "scheduler.max_num_batched_tokens=8"],
        "prompt-lp-preempt": [f"model.path={m['llama']}", f"data.input={i['preempt']}", *greedy,
                              "sampling.prompt_logprobs=2", "cache.block_size=4", "cache.num_blocks=8",
                              "model.max_model_len=32"],
        "score-only": [f"model.path={m['llama']}", f"data.input={i['shared']}", "sampling.prompt_logprobs=1",
                       "sampling.max_tokens=0", "cache.block_size=4"],
        "n3": [f"model.path={m['llama']}", f"data.input={i['mixed']}", "sampling.n=3", *sampled, SETTLED],
        # Prefill steps in flight (runtime.overlap_prefill): n completions sampled a step late, a first token that
        # ends its sequence by length or by a stop token while in flight.
        "n3-ovp": [f"model.path={m['llama']}", f"data.input={i['mixed']}", "sampling.n=3", *sampled, OVP],
        "max1-ovp": [f"model.path={m['llama']}", f"data.input={i['mixed']}", "sampling.temperature=0",
                     "sampling.max_tokens=1", OVP],
        "stop-first": [f"model.path={m['llama']}", f"data.input={i['mixed']}", *greedy,
                       f"sampling.stop_token_ids=[{first}]", SETTLED],
        "stop-first-ovp": [f"model.path={m['llama']}", f"data.input={i['mixed']}", *greedy,
                           f"sampling.stop_token_ids=[{first}]", OVP],
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
                tie = any(abs(float(ref.values[j]) - float(ref.values[k])) < 1e-4
                          for k in (j - 1, j + 1) if 0 <= k < TOP)
                assert tok == int(ref.indices[j]) or tie


@pytest.mark.parametrize("job,prompts", [("penalties", "mixed"), ("penalties-settled", "mixed"),
                                         ("penalties-n3", "mixed"), ("penalties-preempt", "preempt"),
                                         ("penalties-n3-chunked", "mixed")])
def test_penalties_match_a_reference_loop(tiny, runs, job, prompts):
    rows = read_output(runs / f"{job}.jsonl")
    refs = penalized_greedy_reference(tiny["models"]["llama"], tiny["sets"][prompts], MAX_NEW, **PENALTIES)
    if job.startswith("penalties-n3"):  # greedy: each completion is the reference
        assert [[o["token_ids"] for o in r["outputs"]] for r in rows] == [[ref] * 3 for ref in refs]
    elif job == "penalties-preempt":  # max_model_len may end a sequence early
        summary = json.loads((runs / "spec.json.rank0.json").read_text())[job]
        assert summary["preemptions"] > 0, "the small cache forced no preemption"
        assert all(r["token_ids"] and r["token_ids"] == ref[:len(r["token_ids"])] for r, ref in zip(rows, refs))
    else:
        assert [r["token_ids"] for r in rows] == refs
    assert refs != tiny["refs"][("llama", prompts)], "the penalties changed nothing: the test would not notice them"


@pytest.mark.parametrize("job,prompts,k", [("prompt-lp", "shared", 3), ("prompt-lp-preempt", "preempt", 2),
                                           ("score-only", "shared", 1)])
def test_prompt_logprobs_match_transformers(tiny, runs, job, prompts, k):
    from transformers import AutoModelForCausalLM

    summary = json.loads((runs / "spec.json.rank0.json").read_text())[job]
    if job == "prompt-lp":
        assert summary["prefill_chunks"] > 0, "no prompt was prefilled in chunks"
    elif job == "prompt-lp-preempt":
        assert summary["preemptions"] > 0, "the small cache forced no preemption"

    model = AutoModelForCausalLM.from_pretrained(tiny["models"]["llama"], dtype=torch.float32).eval()
    rows = read_output(runs / f"{job}.jsonl")
    if job == "score-only":  # max_tokens 0: the prompt scored, nothing generated
        assert all(r["token_ids"] == [] and r["num_output_tokens"] == 0 and r["finish_reason"] == "length"
                   for r in rows) and summary["output_tokens"] == 0
    else:
        assert [r["token_ids"] for r in rows] == tiny["refs"][("llama", prompts)]  # generation unchanged
    for ids, row in zip(tiny["sets"][prompts], rows):
        with torch.no_grad():
            logprobs = model(torch.tensor([ids])).logits[0].log_softmax(-1)
        got = row["prompt_logprobs"]
        assert len(got) == len(ids) and got[0] is None
        for j in range(1, len(ids)):
            ref = logprobs[j - 1].topk(k)
            want = {int(t): float(v) for t, v in zip(ref.indices, ref.values)}
            want[ids[j]] = float(logprobs[j - 1, ids[j]])
            entry = {int(t): v for t, v in got[j].items()}
            assert entry.keys() == want.keys() or _ties(entry, want), (j, entry, want)
            assert all(abs(entry[t] - want[t]) < 1e-4 for t in entry.keys() & want.keys())


def _ties(entry: dict, want: dict) -> bool:
    """Top-k sets that differ only where the k-th and (k+1)-th values tie within the tolerance."""
    return len(entry) == len(want) and min(entry.values()) - min(want.values()) < 1e-4


def test_logit_bias_of_100_forces_its_token(tiny, runs):
    rows = read_output(runs / "bias.jsonl")
    assert [r["token_ids"] for r in rows] == [[7] * MAX_NEW] * len(tiny["sets"]["mixed"])


def test_n_completions_each_with_its_own_generator(runs):
    many, single = read_output(runs / "n3.jsonl"), read_output(runs / "n1.jsonl")
    for row, one in zip(many, single):
        outs = row["outputs"]
        assert [o["index"] for o in outs] == [0, 1, 2] and row["id"] == one["id"]
        assert row["num_output_tokens"] == sum(o["num_output_tokens"] for o in outs)
        assert outs[0]["token_ids"] == one["token_ids"]  # completion 0 keeps the n = 1 generator key
        assert "outputs" not in one and "token_ids" in one  # n = 1 rows keep their shape
    assert any(len({tuple(o["token_ids"]) for o in row["outputs"]}) > 1 for row in many), "completions identical"


def test_overlapped_prefills_settle_first_tokens_as_settled_ones(tiny, runs):
    """Prefill steps left in flight (runtime.overlap_prefill) give the outputs of settled ones, where the first token
    ends a sequence too (max_tokens 1; a stop token), and count as overlapped in the job's summary."""
    summary = json.loads((runs / "spec.json.rank0.json").read_text())
    assert read_output(runs / "n3-ovp.jsonl") == read_output(runs / "n3.jsonl")
    refs = tiny["refs"][("llama", "mixed")]
    max1 = read_output(runs / "max1-ovp.jsonl")
    assert [r["token_ids"] for r in max1] == [ref[:1] for ref in refs]
    assert all(r["finish_reason"] == ("stop" if r["token_ids"] == [1] else "length") for r in max1)
    stopped = read_output(runs / "stop-first-ovp.jsonl")
    assert stopped == read_output(runs / "stop-first.jsonl")
    assert stopped[0]["token_ids"] == refs[0][:1] and stopped[0]["finish_reason"] == "stop"
    for job in ("n3-ovp", "max1-ovp", "stop-first-ovp"):
        assert summary[job]["overlapped_prefills"] > 0, f"{job}: no prefill step was left in flight"
    assert summary["stop-first"]["overlapped_prefills"] == 0


def test_generation_config_defaults_unless_overridden(tiny, runs):
    greedy = tiny["refs"][("llama", "mixed")]
    assert [r["token_ids"] for r in read_output(runs / "gen-default.jsonl")] == greedy  # temperature 0 from the model
    assert [r["token_ids"] for r in read_output(runs / "gen-override.jsonl")] != greedy  # temperature=1.0 given


def test_openai_batch_file_end_to_end(tiny, runs):
    rows = read_output(runs / "openai.jsonl")
    prompts = tiny["sets"]["mixed"]
    assert [r["custom_id"] for r in rows] == [f"g{k}" for k in range(len(prompts))] + ["two", "bad", "penalized",
                                                                                        "biased", "scored", "echoed"]
    for row, ref, ids in zip(rows, tiny["refs"][("llama", "mixed")], prompts):
        body = row["response"]["body"]
        assert row["error"] is None and row["response"]["status_code"] == 200
        assert body["object"] == "text_completion" and body["model"] == "tiny"
        assert body["choices"][0]["token_ids"] == ref  # no tokenizer: token ids, vLLM's extension
        assert body["usage"] == {"prompt_tokens": len(ids), "completion_tokens": len(ref),
                                 "total_tokens": len(ids) + len(ref)}
    two = rows[-6]["response"]["body"]["choices"]
    assert [c["index"] for c in two] == [0, 1]
    assert all(len(c["logprobs"]["tokens"]) == 3 and len(c["logprobs"]["top_logprobs"][0]) <= 2 for c in two)
    bad = rows[-5]
    assert bad["response"]["status_code"] == 400 and bad["error"]["code"] == "invalid_sampling"
    # OpenAI's penalties are honoured: the same tokens as the job-wide penalties gave this prompt
    penalized = rows[-4]["response"]["body"]["choices"][0]["token_ids"]
    assert penalized == read_output(runs / "penalties.jsonl")[0]["token_ids"]
    assert rows[-3]["response"]["body"]["choices"][0]["token_ids"] == [9] * 4  # logit_bias +100, even when sampling
    # vLLM's prompt_logprobs on a completion: per choice, one entry per prompt token, the first None
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny["models"]["llama"], dtype=torch.float32).eval()
    scored = rows[-2]["response"]["body"]["choices"][0]["prompt_logprobs"]
    with torch.no_grad():
        logprobs = model(torch.tensor([prompts[4]])).logits[0].log_softmax(-1)
    assert len(scored) == len(prompts[4]) and scored[0] is None and all(1 <= len(e) <= 2 for e in scored[1:])
    for j, (entry, token) in enumerate(zip(scored[1:], prompts[4][1:])):
        assert abs(entry[str(token)] - float(logprobs[j, token])) < 1e-4
    # echo with logprobs and max_tokens 0: the prompt's tokens and their logprobs, the first None, nothing after
    echoed = rows[-1]["response"]["body"]["choices"][0]
    assert echoed["token_ids"] == [] and echoed["finish_reason"] == "length"
    lp = echoed["logprobs"]
    with torch.no_grad():
        logprobs = model(torch.tensor([prompts[1]])).logits[0].log_softmax(-1)
    assert lp["tokens"] == [f"token_id:{t}" for t in prompts[1]]
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    for j, token in enumerate(prompts[1][1:]):
        assert abs(lp["token_logprobs"][j + 1] - float(logprobs[j, token])) < 1e-4
        assert len(lp["top_logprobs"][j + 1]) == 2

    chat = read_output(runs / "openai-chat.jsonl")[0]["response"]["body"]
    assert chat["object"] == "chat.completion" and chat["id"].startswith("chatcmpl-")
    choice = chat["choices"][0]
    assert isinstance(choice["message"]["content"], str) and choice["message"]["role"] == "assistant"
    assert len(choice["logprobs"]["content"]) == chat["usage"]["completion_tokens"] <= 4
