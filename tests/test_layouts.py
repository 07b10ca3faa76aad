"""Greedy outputs equal transformers' generate in every dp x tp layout (world <= 4), edge cases included.

One torchrun launch per layout runs every case of that layout (start-up dominates CPU test time).
"""

from __future__ import annotations

import pytest

from support.launch import run_jobs
from support.tiny_models import (FP8_QWEN3, MAX_NEW, MODELS, MOE_MODELS, PENALTIES, penalized_greedy_reference,
                                 read_output)

LAYOUTS = [(1, 1), (1, 2), (2, 1), (2, 2), (4, 1), (1, 4)]
# Seeded sampling with filters and penalties (their counts live on each rank's device, TP ranks alike).
SAMPLED = ["sampling.temperature=0.9", "sampling.top_p=0.9", "sampling.top_k=50", "sampling.seed=7",
           "sampling.repetition_penalty=1.2", "sampling.presence_penalty=0.3"]
PENALIZED = [f"sampling.{k}={v}" for k, v in PENALTIES.items()]


def _cases(tiny, out_dir, settled_prefill: bool):
    """(name, overrides, reference key or None) for every case of one layout; `settled_prefill`: with the cases that
    settle prefill steps at once too (runtime.overlap_prefill=false; rank-local logic, so not in every layout)."""
    greedy = ["sampling.temperature=0", f"sampling.max_tokens={MAX_NEW}"]
    m, i = tiny["models"], tiny["inputs"]
    # The MoE models too: under TP their experts' output reduce moves into the next RMSNorm, as o_proj's does.
    cases = [(f"{name}-mixed", [f"model.path={m[name]}", f"data.input={i['mixed']}"], (name, "mixed"))
             for name in MODELS + MOE_MODELS]
    cases += [
        # Qwen2-MoE's gated shared expert under DP attention where the layout has DP (its MLP then spans every rank)
        # and its experts split by features: the gate scales each rank's partial sums before the one reduce.
        ("qwen2moe-dpattn", [f"model.path={m['qwen2moe']}", f"data.input={i['mixed']}", "parallel.dp_attention=true",
                             "parallel.moe=tp"], ("qwen2moe", "mixed")),
        # Linear layers held in float8 (those whose shard is whole 16 x 16 blocks under the layout), against
        # transformers on the dequantized values.
        ("qwen3-fp8-linears", [f"model.path={m[FP8_QWEN3]}", f"data.input={i['mixed']}", "model.linear_dtype=fp8"],
         (FP8_QWEN3, "mixed")),
        # Fewer prompts than DP ranks: the other ranks never get work.
        ("llama-one", [f"model.path={m['llama']}", f"data.input={i['one']}"], ("llama", "one")),
        # A 200-token prompt among short ones, prefilled in 48-token chunks.
        ("llama-long", [f"model.path={m['llama']}", f"data.input={i['long']}",
                        "scheduler.max_num_batched_tokens=48"], ("llama", "long")),
        # 8 blocks of 4 tokens for eight requests of up to 24 tokens: preemption by recompute.
        ("llama-preempt", [f"model.path={m['llama']}", f"data.input={i['preempt']}", "cache.num_blocks=8",
                           "cache.block_size=4", "model.max_model_len=32"], ("llama", "preempt")),
        # Requests sharing a 20-token prefix, one at a time per rank, so that every rank holding two of them
        # serves the second from the blocks of the first (outputs unchanged) ...
        ("llama-prefix", [f"model.path={m['llama']}", f"data.input={i['shared']}", "cache.block_size=4",
                          "scheduler.max_num_seqs=1"], ("llama", "shared")),
        # ... also when a small cache keeps preempting and evicting them.
        ("llama-prefix-preempt", [f"model.path={m['llama']}", f"data.input={i['shared']}", "cache.block_size=4",
                                  "cache.num_blocks=12", "model.max_model_len=48"], ("llama", "shared")),
        # Head-major KV pages (cache.layout=head: each head's page one contiguous run) under preemption: the same
        # tokens, the cache being a transposed view that every path addresses by its strides.
        ("llama-head-pages", [f"model.path={m['llama']}", f"data.input={i['preempt']}", "cache.num_blocks=8",
                              "cache.block_size=4", "model.max_model_len=32", "cache.layout=head"],
         ("llama", "preempt")),
        # Scoring the prompts too (the LM head over every prompt token, on every TP rank alike).
        ("llama-prompt-lp", [f"model.path={m['llama']}", f"data.input={i['shared']}", "cache.block_size=4",
                             "sampling.prompt_logprobs=2"], ("llama", "shared")),
    ]
    # Overlapped steps (the default: tokens settled one step late, EOS stops with a void token; prefill steps' first
    # tokens too, between chunks, preemption and prefix-cache hits) give what synchronous steps give; the
    # prompt-scoring case falls back to settled prefills.
    sync, overlap = ["runtime.overlap_steps=false"], ["runtime.overlap_steps=true"]
    settled = overlap + ["runtime.overlap_prefill=false"]
    overlapped = ("llama-mixed", "qwen3-mixed", "llama-long", "llama-preempt", "llama-prefix", "llama-prefix-preempt")
    variants = [(f"{name}-sync", o + sync, ref) for name, o, ref in cases if name in overlapped]
    if settled_prefill:
        # Overlapped decode steps after prefill steps that settle at once (runtime.overlap_prefill=false).
        variants += [(f"{name}-settled", o + settled, ref) for name, o, ref in cases if name in overlapped]
    cases += variants
    jobs = [{"name": n, "overrides": o + greedy + [f"data.output={out_dir / n}.jsonl"]} for n, o, _ in cases]
    # Greedy with penalties (steps in flight, the default), against a reference loop.
    jobs.append({"name": "llama-penalties", "overrides": [f"model.path={m['llama']}", f"data.input={i['mixed']}",
                                                          *greedy, *PENALIZED,
                                                          f"data.output={out_dir}/llama-penalties.jsonl"]})
    runs = [("a", sync), ("b", overlap)] + [("c", settled)] * settled_prefill
    for run, extra in runs:  # seeded sampling: in sync steps, overlapped ones, and with prefills settled at once
        jobs.append({"name": f"sampled-{run}", "overrides": [
            f"model.path={m['llama']}", f"data.input={i['mixed']}", f"sampling.max_tokens={MAX_NEW}",
            f"data.output={out_dir}/sampled-{run}.jsonl", *SAMPLED, *extra]})
    return jobs, {n: ref for n, _, ref in cases}


@pytest.fixture(scope="module")
def layout_runs(tiny, tmp_path_factory):
    return {}


@pytest.fixture(scope="module")
def penalized_refs(tiny):
    return penalized_greedy_reference(tiny["models"]["llama"], tiny["sets"]["mixed"], MAX_NEW, **PENALTIES)


@pytest.mark.parametrize("dp,tp", LAYOUTS, ids=[f"dp{d}xtp{t}" for d, t in LAYOUTS])
def test_layout_matches_transformers(tiny, tmp_path_factory, layout_runs, penalized_refs, dp, tp):
    out_dir = tmp_path_factory.mktemp(f"dp{dp}tp{tp}")
    settled_prefill = (dp, tp) in ((1, 1), (2, 2))
    jobs, refs = _cases(tiny, out_dir, settled_prefill)
    for job in jobs:
        job["overrides"] += [f"parallel.dp={dp}", f"parallel.tp={tp}"]
    summaries = run_jobs(dp * tp, jobs, out_dir / "spec.json")

    for name, ref_key in refs.items():
        rows = read_output(out_dir / f"{name}.jsonl")
        got = [r["token_ids"] for r in rows]
        assert got == tiny["refs"][ref_key], f"{name} differs from transformers in dp{dp}xtp{tp}"
        assert [r["id"] for r in rows] == [f"r{k}" for k in range(len(rows))], "output not in input order"
        for r in rows:
            expected = "stop" if r["token_ids"][-1] == 1 else "length"
            assert r["finish_reason"] == expected and r["num_output_tokens"] == len(r["token_ids"])

    _check_prompt_logprobs(tiny, read_output(out_dir / "llama-prompt-lp.jsonl"))
    penalized = [r["token_ids"] for r in read_output(out_dir / "llama-penalties.jsonl")]
    assert penalized == penalized_refs, f"penalties differ from the reference loop in dp{dp}xtp{tp}"
    assert sum(s["llama-penalties"]["overlapped_prefills"] for s in summaries.values()) > 0, \
        "penalized prefill steps were not left in flight (their counts are on the device: they may be)"
    per_rank = summaries.values()
    for name in ("llama-preempt", "llama-preempt-sync", "llama-preempt-settled"):
        if name in refs:
            assert sum(s[name]["preemptions"] for s in per_rank) > 0, f"{name}: the small cache forced no preemption"
    for name in refs:
        overlapped = sum(s[name]["overlapped_prefills"] for s in per_rank)
        if name.endswith(("-sync", "-settled")) or name == "llama-prompt-lp":  # off, or prompts scored
            assert overlapped == 0, f"{name}: {overlapped} prefill steps left in flight"
        else:
            assert overlapped > 0, f"{name}: no prefill step was left in flight"
    assert sum(s["llama-long"]["prefill_chunks"] for s in per_rank) > 0, "the long prompt was not chunked"
    # runtime.freeze_gc: in the launch's first job (multi_job leaves the later ones unfrozen) every rank froze its
    # startup heap; every job reports the count of its step loop's full collections (how many depends on the heap).
    first = jobs[0]["name"]
    assert all(s[first]["gc_frozen_objects"] > 10_000 for s in per_rank), "the first job froze no startup heap"
    assert all(s[name]["gc_frozen_objects"] == 0 and isinstance(s[name]["gc_full_collections"], int)
               for s in per_rank for name in refs if name != first)
    assert sum(s["llama-prefix"]["prefix_cached_tokens"] for s in per_rank) > 0, "no prefix-cache hit"

    sampled_a = read_output(out_dir / "sampled-a.jsonl")
    for run in "bc"[:1 + settled_prefill]:
        assert sampled_a == read_output(out_dir / f"sampled-{run}.jsonl"), f"seeded sampling differs between " \
            f"sync steps and sampled-{run}'s (b: overlapped steps, prefills too; c: prefills settled at once)"
    greedy = read_output(out_dir / "llama-mixed.jsonl")
    assert [r["token_ids"] for r in sampled_a] != [r["token_ids"] for r in greedy], "sampling looks greedy"
    layout_runs[(dp, tp)] = sampled_a


def _check_prompt_logprobs(tiny, rows) -> None:
    """Each prompt token's own log-probability as transformers gives it (fp32), the first token's None."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny["models"]["llama"], dtype=torch.float32).eval()
    for ids, row in zip(tiny["sets"]["shared"], rows):
        with torch.no_grad():
            logprobs = model(torch.tensor([ids])).logits[0].log_softmax(-1)
        got = row["prompt_logprobs"]
        assert len(got) == len(ids) and got[0] is None and all(len(e) in (2, 3) for e in got[1:])
        for j in range(1, len(ids)):
            assert abs(got[j][str(ids[j])] - float(logprobs[j - 1, ids[j]])) < 1e-4, (j, got[j])


def test_seeded_sampling_same_across_layouts(tiny, tmp_path_factory, layout_runs):
    """Per-request generators keyed by (seed, id): dp1xtp1 and dp2xtp2 draw the same tokens."""
    for dp, tp in ((1, 1), (2, 2)):
        if (dp, tp) not in layout_runs:  # this test was selected alone: run just the sampled jobs
            out_dir = tmp_path_factory.mktemp(f"sampled{dp}{tp}")
            jobs = [j for j in _cases(tiny, out_dir, settled_prefill=False)[0] if j["name"] == "sampled-a"]
            jobs[0]["overrides"] += [f"parallel.dp={dp}", f"parallel.tp={tp}"]
            run_jobs(dp * tp, jobs, out_dir / "spec.json")
            layout_runs[(dp, tp)] = read_output(out_dir / "sampled-a.jsonl")
    assert layout_runs[(1, 1)] == layout_runs[(2, 2)]
