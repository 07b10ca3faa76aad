"""DeepSeek-V2 / V3 (MLA + MoE): greedy outputs equal transformers' in every layout, DP mode and MoE split.

One torchrun launch per layout runs all three tiny models in every (DP mode, MoE split) that differs in
that layout, plus DP-attention edge cases in the 2x2 and 4x1 launches. In-process tests cover the
pieces (routing, YaRN, absorbed decode, expert-parallel loading, layout checks) against transformers.
"""

from __future__ import annotations

import json
import random

import pytest
import torch

from support.block_fp8 import write_block_fp8_copy
from support.fp8_rounding import fp8_rounded_attention
from support.launch import run_jobs
from support.tiny_models import DEEPSEEK_MODELS, MAX_NEW, build_model, greedy_reference, read_output

# (dp_attention, moe) combos that shard something differently in each layout (dp=1 has no DP attention;
# with one MLP rank, ep and tp are the same).
MODES = {
    (1, 1): [(False, "ep")],
    (2, 1): [(False, "ep"), (True, "ep"), (True, "tp")],
    (1, 2): [(False, "ep"), (False, "tp")],
    (2, 2): [(False, "ep"), (False, "tp"), (True, "ep"), (True, "tp")],
    (4, 1): [(False, "ep"), (True, "ep"), (True, "tp")],
}
GREEDY = {"sampling.temperature": "0", "sampling.max_tokens": str(MAX_NEW), "runtime.warmup": "false"}
# Row 1 stops after 2 tokens, the others run 20: its DP rank goes idle long before the others finish.
UNEVEN_LENGTHS, UNEVEN_MAX = [5, 30, 4, 3], [20, 2, 20, 20]
EDGE_MODEL = "dsv3"
FP8_JOB = "dsv2-fp8-dpattn-chunked"
# DeepSeek-V3's float8 release format (weights in e4m3, a scale per 24 x 40 block: no shard boundary of tp=2 falls
# on a block's edge), against transformers running the dequantized values.
BLOCK_FP8_JOB, BLOCK_FP8_MODEL = "dsv3-blockfp8-tp", "dsv3-blockfp8"
# The same release format with 32 x 32 blocks, its experts kept in float8 (model.expert_dtype=fp8): at tp=2 each
# rank holds 16 of an expert's 32 features, so its 16 x 16 blocks lie inside the checkpoint's and keep its bytes.
# At dp2 x tp2 with DP attention the experts go whole to the ranks (parallel.moe=ep), two a rank. Its linear layers
# are held in float8 too (model.linear_dtype=fp8) where their shards are whole 32 x 32 blocks (o_proj, the
# replicated latent projections), the rest in the model's dtype.
FP8_EXPERTS_JOB, FP8_EXPERTS_MODEL = "dsv3-fp8experts", "dsv3-blockfp8-32"


def _prompts(seed: int, lengths: list[int]) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(2, 301) for _ in range(n)] for n in lengths]


def _write(path, prompts, max_tokens=None):
    with open(path, "w") as f:
        for i, ids in enumerate(prompts):
            row = {"id": f"r{i}", "prompt_token_ids": ids}
            if max_tokens:
                row["sampling"] = {"max_tokens": max_tokens[i]}
            f.write(json.dumps(row) + "\n")
    return path


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    """Three tiny DeepSeek checkpoints (and DeepSeek-V3's as a block-float8 release, with two block sizes), prompt
    files and transformers' greedy outputs."""
    root = tmp_path_factory.mktemp("deepseek")
    models = {m: build_model(m, root / m) for m in DEEPSEEK_MODELS}
    sets = {"mixed": _prompts(10, [5, 17, 33, 1, 60, 9]), "one": _prompts(11, [11]),
            "long": _prompts(12, [7, 200, 90, 5]), "uneven": _prompts(13, UNEVEN_LENGTHS)}
    refs = {(m, "mixed"): greedy_reference(models[m], sets["mixed"], MAX_NEW) for m in DEEPSEEK_MODELS}
    m = EDGE_MODEL
    refs[(m, "one")] = greedy_reference(models[m], sets["one"], MAX_NEW)
    refs[(m, "long")] = greedy_reference(models[m], sets["long"], MAX_NEW)
    full = greedy_reference(models[m], sets["uneven"], max(UNEVEN_MAX))
    refs[(m, "uneven")] = [t[:n] for t, n in zip(full, UNEVEN_MAX)]  # greedy: a prefix of the longer run
    write_block_fp8_copy(models["dsv3"], root / BLOCK_FP8_MODEL, root / "dsv3-dequantized", (24, 40))
    models[BLOCK_FP8_MODEL] = root / BLOCK_FP8_MODEL
    refs[(BLOCK_FP8_MODEL, "mixed")] = greedy_reference(root / "dsv3-dequantized", sets["mixed"], MAX_NEW)
    write_block_fp8_copy(models["dsv3"], root / FP8_EXPERTS_MODEL, root / "dsv3-dequantized-32", (32, 32))
    models[FP8_EXPERTS_MODEL] = root / FP8_EXPERTS_MODEL
    refs[(FP8_EXPERTS_MODEL, "mixed")] = greedy_reference(root / "dsv3-dequantized-32", sets["mixed"], MAX_NEW)
    inputs = {s: _write(root / f"{s}.jsonl", p) for s, p in sets.items()}
    inputs["uneven"] = _write(root / "uneven.jsonl", sets["uneven"], UNEVEN_MAX)
    return {"models": models, "refs": refs, "inputs": inputs, "sets": sets}


def _edge_cases() -> list[tuple[str, list[str], str]]:
    """(name, overrides, prompt set) of the DP-attention edge cases."""
    return [
        ("one", [], "one"),  # fewer prompts than DP ranks: the others run dummy batches throughout
        ("uneven", [], "uneven"),  # one DP rank finishes long before the others
        # One sequence at a time per rank: a rank prefills its next request while the others decode (prefill
        # steps settled at once; the -ovp cases below leave them in flight, the default).
        ("staggered", ["scheduler.max_num_seqs=1", "runtime.overlap_prefill=false"], "uneven"),
        # 48-token chunks: the 200- and 90-token prompts take 5 and 2 chunks on different ranks.
        ("chunked", ["scheduler.max_num_batched_tokens=48", "runtime.overlap_prefill=false"], "long"),
        # The same as `chunked` with the warmup step (DP attention, dp>1, tp>1 when 2x2) in front of it.
        ("warmup", ["scheduler.max_num_batched_tokens=48", "runtime.warmup=true"], "long"),
        # Synchronous decode steps (overlapped ones, the default, run in every other case) while ranks finish
        # at different times.
        ("sync", ["runtime.overlap_steps=false"], "uneven"),
        # Prefill steps in flight (runtime.overlap_prefill, named): a rank's first tokens settle a step late while
        # the others decode, run dummy steps or prefill their next chunk.
        ("staggered-ovp", ["scheduler.max_num_seqs=1", "runtime.overlap_prefill=true"], "uneven"),
        ("chunked-ovp", ["scheduler.max_num_batched_tokens=48", "runtime.overlap_prefill=true"], "long"),
    ]


def _jobs(ds, dp, tp, out_dir):
    """Jobs of one layout and, per job, (model, prompt set) of its reference."""
    jobs, refs = [], {}
    for dp_attn, moe in MODES[(dp, tp)]:
        for m in DEEPSEEK_MODELS:
            name = f"{m}-{'dpattn' if dp_attn else 'decoupled'}-{moe}"
            refs[name] = (m, "mixed")
            jobs.append({"name": name, "overrides": [
                f"model.path={ds['models'][m]}", f"data.input={ds['inputs']['mixed']}",
                f"parallel.dp_attention={str(dp_attn).lower()}", f"parallel.moe={moe}"]})
    if (dp, tp) in ((1, 2), (2, 2)):
        # The shared expert run inside the routed experts' kernels as one more expert of their width (each rank's
        # share of both: parallel.moe=tp), weighing 1 beside V3's scaled routed weights; at dp2 x tp2 under DP
        # attention. On the CPU the layer computes it through the kernels' reference.
        for m in ("dsv3",) if dp == 2 else ("dsv2", "dsv3"):
            refs[f"{m}-shared-fused"] = (m, "mixed")
            jobs.append({"name": f"{m}-shared-fused", "switches": {
                "spmd_infer.layers.moe.SHARED_FUSED_TOKENS": 4096, "spmd_infer.layers.moe.SHARED_FUSED_ON_CPU": True},
                         "overrides": [f"model.path={ds['models'][m]}", f"data.input={ds['inputs']['mixed']}",
                                       "parallel.moe=tp", f"parallel.dp_attention={str(dp == 2).lower()}"]})
    if (dp, tp) == (1, 2):
        refs[BLOCK_FP8_JOB] = (BLOCK_FP8_MODEL, "mixed")
        jobs.append({"name": BLOCK_FP8_JOB, "overrides": [
            f"model.path={ds['models'][BLOCK_FP8_MODEL]}", f"data.input={ds['inputs']['mixed']}", "parallel.moe=tp"]})
        refs[f"{FP8_EXPERTS_JOB}-tp"] = (FP8_EXPERTS_MODEL, "mixed")
        jobs.append({"name": f"{FP8_EXPERTS_JOB}-tp", "overrides": [
            f"model.path={ds['models'][FP8_EXPERTS_MODEL]}", f"data.input={ds['inputs']['mixed']}",
            "parallel.moe=tp", "model.expert_dtype=fp8", "model.linear_dtype=fp8"]})
    if (dp, tp) == (2, 2):
        # Float8 experts split whole over all four ranks under DP attention (two 32 x 32-block experts each).
        refs[f"{FP8_EXPERTS_JOB}-dpattn-ep"] = (FP8_EXPERTS_MODEL, "mixed")
        jobs.append({"name": f"{FP8_EXPERTS_JOB}-dpattn-ep", "overrides": [
            f"model.path={ds['models'][FP8_EXPERTS_MODEL]}", f"data.input={ds['inputs']['mixed']}",
            "parallel.dp_attention=true", "parallel.moe=ep", "model.expert_dtype=fp8", "model.linear_dtype=fp8"]})
        # A float8 latent cache under DP attention and TP experts, prefilled in chunks over its own cached prefix.
        refs[FP8_JOB] = ("dsv2", "long")  # against transformers reading float8-rounded latents (the test's refs)
        jobs.append({"name": FP8_JOB, "overrides": [
            f"model.path={ds['models']['dsv2']}", f"data.input={ds['inputs']['long']}", "cache.dtype=fp8",
            "parallel.dp_attention=true", "parallel.moe=tp", "scheduler.max_num_batched_tokens=48"]})
    if (dp, tp) in ((2, 2), (4, 1)):
        model, moe = EDGE_MODEL, "tp" if (dp, tp) == (2, 2) else "ep"
        for case, extra, prompts in _edge_cases():
            name = f"{model}-edge-{case}"
            refs[name] = (model, prompts)
            jobs.append({"name": name, "overrides": [
                f"model.path={ds['models'][model]}", f"data.input={ds['inputs'][prompts]}",
                "parallel.dp_attention=true", f"parallel.moe={moe}", *extra]})
    for job in jobs:
        # A case's own settings (scheduler, warmup) replace GREEDY's; Hydra takes each key once.
        merged = dict(GREEDY, **dict(o.split("=", 1) for o in job["overrides"]))
        job["overrides"] = [f"{k}={v}" for k, v in merged.items()] + [
            f"parallel.dp={dp}", f"parallel.tp={tp}", f"data.output={out_dir / job['name']}.jsonl"]
    return jobs, refs


@pytest.mark.parametrize("dp,tp", list(MODES), ids=[f"dp{d}xtp{t}" for d, t in MODES])
def test_deepseek_matches_transformers(ds, tmp_path_factory, monkeypatch, dp, tp):
    out_dir = tmp_path_factory.mktemp(f"ds_dp{dp}tp{tp}")
    jobs, refs = _jobs(ds, dp, tp, out_dir)
    summaries = run_jobs(dp * tp, jobs, out_dir / "spec.json", timeout=300)

    want = {name: ds["refs"].get(key) for name, key in refs.items()}
    if FP8_JOB in refs:
        fp8_rounded_attention(monkeypatch)
        want[FP8_JOB] = greedy_reference(ds["models"]["dsv2"], ds["sets"]["long"], MAX_NEW)
    for name in refs:
        rows = read_output(out_dir / f"{name}.jsonl")
        assert [r["id"] for r in rows] == [f"r{k}" for k in range(len(rows))], f"{name}: output not in input order"
        assert [r["token_ids"] for r in rows] == want[name], f"{name} differs from transformers in dp{dp}xtp{tp}"
    if BLOCK_FP8_JOB in refs:  # the same model, its routed experts in float8: fewer bytes on every rank
        for s in summaries.values():
            assert s[f"{FP8_EXPERTS_JOB}-tp"]["weight_bytes"] < s[BLOCK_FP8_JOB]["weight_bytes"] * 0.9
    if (dp, tp) not in ((2, 2), (4, 1)):
        return
    model = EDGE_MODEL
    per_rank = list(summaries.values())
    chunks = sorted({s[f"{model}-edge-chunked"]["prefill_chunks"] for s in per_rank})
    assert len(chunks) > 1, f"every rank prefilled in the same number of chunks: {chunks}"
    for case in ("staggered-ovp", "chunked-ovp"):
        assert sum(s[f"{model}-edge-{case}"]["overlapped_prefills"] for s in per_rank) > 0, f"{case}: none in flight"
    for case in ("staggered", "chunked"):
        assert sum(s[f"{model}-edge-{case}"]["overlapped_prefills"] for s in per_rank) == 0, f"{case}: not settled"
    # The warmup ran one forward step through the step function (with DPMeta); the job without it none.
    for s in per_rank:
        assert s[f"{model}-edge-warmup"]["warmup_steps"] == 1 and s[f"{model}-edge-chunked"]["warmup_steps"] == 0


# ---- in-process checks of the pieces ---------------------------------------------------------------


def _hf_config(name):
    from support.tiny_models import _configs

    return _configs()[name]


@pytest.mark.parametrize("name", DEEPSEEK_MODELS)
def test_routing_matches_transformers(name):
    from spmd_infer.layers.moe import route
    from spmd_infer.models.deepseek_v2 import DeepseekV2DecoderLayer, DeepseekV3DecoderLayer

    config = _hf_config(name)
    layer_cls = DeepseekV3DecoderLayer if name == "dsv3" else DeepseekV2DecoderLayer
    router_mod = __import__(f"transformers.models.{config.model_type}.modeling_{config.model_type}",
                            fromlist=["x"])
    router = getattr(router_mod, f"{'DeepseekV3' if name == 'dsv3' else 'DeepseekV2'}TopkRouter")(config)
    torch.manual_seed(0)
    with torch.no_grad():
        router.weight.normal_(0, 0.5)
        if hasattr(router, "e_score_correction_bias"):
            router.e_score_correction_bias.normal_(0, 0.1)
        x = torch.randn(64, config.hidden_size)
        _, want_w, want_ids = router(x)
        bias = getattr(router, "e_score_correction_bias", None)
        got_w, got_ids = route(torch.nn.functional.linear(x, router.weight), layer_cls.routing(config), bias)
    order_w, order_g = want_ids.argsort(-1), got_ids.argsort(-1)
    assert torch.equal(want_ids.gather(1, order_w), got_ids.gather(1, order_g))
    torch.testing.assert_close(want_w.gather(1, order_w), got_w.gather(1, order_g))


def test_yarn_matches_transformers():
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from transformers.models.deepseek_v2.modeling_deepseek_v2 import yarn_apply_mscale

    from spmd_infer.layers.rotary import inverse_frequencies, rope_parameters
    from spmd_infer.models.deepseek_v2 import softmax_scale

    config = _hf_config("dsv2lora")
    want, want_factor = ROPE_INIT_FUNCTIONS["yarn"](config)
    params = rope_parameters(config)
    got, got_factor = inverse_frequencies(config.qk_rope_head_dim, params, config.max_position_embeddings)
    assert torch.equal(want, got) and want_factor == got_factor != 1.0
    qk = config.qk_nope_head_dim + config.qk_rope_head_dim
    assert softmax_scale(params, qk) == yarn_apply_mscale(config.rope_parameters, qk ** -0.5) != qk ** -0.5


def test_absorbed_decode_equals_expanded_attention():
    """Decode attends in latent space; prefill expands to per-head K/V. Same numbers, different algebra."""
    from spmd_infer.forward_batch import ForwardBatch
    from spmd_infer.layers.mla import LatentAttention

    torch.manual_seed(0)
    heads, rank, nope, rope, v, bs = 3, 12, 8, 4, 6, 4
    attn = LatentAttention(heads, rank, nope, rope, v, 0.3)
    # Unwritten slots hold garbage (torch.empty); NaN there must not leak into any output.
    attn.bind_kv_cache([torch.full((20, bs, 1, rank + rope), float("nan"))])
    w = torch.randn(heads * (nope + v), rank)
    lens = [9, 1, 14]
    tables = torch.tensor([[5, 2, 7, -1], [0, -1, -1, -1], [3, 9, 11, 4]], dtype=torch.int32)
    slots = [int(tables[i, p // bs]) * bs + p % bs for i, n in enumerate(lens) for p in range(n)]
    t = sum(lens)
    qn, qp, c, kp = torch.randn(t, heads, nope), torch.randn(t, heads, rope), torch.randn(t, rank), torch.randn(t, rope)
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)

    def batch(prefill):
        return ForwardBatch(input_ids=torch.zeros(t, dtype=torch.int64), positions=torch.zeros(t, dtype=torch.int64),
                            is_prefill=prefill, cu_seqlens_q=cu, context_lens=torch.tensor(lens, dtype=torch.int32),
                            slot_mapping=torch.tensor(slots), block_tables=tables,
                            logits_indices=torch.zeros(0, dtype=torch.int64), dp_meta=None, max_context_len=max(lens))

    expanded = attn(qn, qp, c, kp, w, batch(True))
    absorbed = attn(qn, qp, c, kp, w, batch(False))  # the same queries, causal within each sequence
    torch.testing.assert_close(absorbed, expanded, rtol=1e-4, atol=1e-5)
    no_cache = LatentAttention(heads, rank, nope, rope, v, 0.3)(qn, qp, c, kp, w, batch(True))
    torch.testing.assert_close(no_cache, expanded)


def test_expert_parallel_loading_reads_only_local_experts(tmp_path):
    """Rank r of 4 (ep) reads its 2 of the 8 experts per MoE layer; no process group is needed to load."""
    from transformers import AutoConfig

    from spmd_infer.loader import load_weights
    from spmd_infer.models.registry import model_class
    from spmd_infer.parallel.comm import Shard
    from spmd_infer.parallel.sharding import LayerSharding
    from safetensors import safe_open

    folder = build_model("dsv3", tmp_path / "dsv3")
    config = AutoConfig.from_pretrained(folder)
    moe_layers = config.num_hidden_layers - config.first_k_dense_replace

    def load(rank, size):
        sharding = LayerSharding(attn=Shard(), mlp=Shard(rank, size), dp=Shard(), dp_attention=size > 1, moe="ep")
        model = model_class(config)(config, sharding)
        return model, load_weights(model, folder)

    _, full = load(0, 1)
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        expert_names = [n for n in f.keys() if ".mlp.experts." in n]
        experts = {n: f.get_tensor(n) for n in expert_names}
    assert len(expert_names) == moe_layers * 8 * 3
    for rank in range(4):
        model, stats = load(rank, 4)
        assert stats.tensors_read == full.tensors_read - moe_layers * 6 * 3
        w13 = model.model.layers[1].mlp.experts.w13
        for local in range(2):
            gate = experts[f"model.layers.1.mlp.experts.{2 * rank + local}.gate_proj.weight"]
            assert torch.equal(w13[local, : gate.shape[0]], gate)


def test_layout_checks_say_what_to_change():
    from spmd_infer.models.registry import check_layout, check_mlp_layout
    from spmd_infer.parallel.dims import ConfigError

    config = _hf_config("dsv3")
    check_layout(config, 4)
    check_mlp_layout(config, 8, "ep")  # 8 experts over 8 ranks; shared/dense sizes split 8 ways too
    with pytest.raises(ConfigError, match=r"parallel\.tp=3 does not divide .*; choose parallel\.tp from \[1, 2, 4\]"):
        check_layout(config, 3)
    with pytest.raises(ConfigError, match="parallel.moe=tp"):
        check_mlp_layout(config, 16, "ep")
    with pytest.raises(ConfigError, match="moe_intermediate_size"):
        check_mlp_layout(config, 64, "tp")


def test_a_routing_the_layers_cannot_build_is_refused_before_the_load():
    from spmd_infer.models.registry import model_class
    from spmd_infer.parallel.dims import ConfigError

    config = _hf_config("dsv2")
    config.architectures = ["DeepseekV2ForCausalLM"]
    assert model_class(config).__name__ == "DeepseekV2ForCausalLM"
    config.topk_method = "noaux_tc"  # DeepSeek-V3's, named in a V2 config
    with pytest.raises(ConfigError, match="topk_method='noaux_tc' is not supported for DeepseekV2ForCausalLM"):
        model_class(config)


def test_v3_multi_token_prediction_layer_is_skipped(tmp_path):
    """DeepSeek-V3 checkpoints store their MTP module as layer num_hidden_layers; generation never uses it."""
    from safetensors.torch import save_file
    from transformers import AutoConfig

    from spmd_infer.loader import load_weights
    from spmd_infer.models.registry import model_class
    from spmd_infer.parallel.sharding import LayerSharding
    from spmd_infer.layers.weights import WeightError

    folder = build_model("dsv3", tmp_path / "dsv3")
    config = AutoConfig.from_pretrained(folder)
    n = config.num_hidden_layers
    save_file({f"model.layers.{n}.eh_proj.weight": torch.zeros(4, 4)}, str(folder / "mtp.safetensors"))
    load_weights(model_class(config)(config, LayerSharding.single()), folder)
    save_file({f"model.layers.{n + 1}.eh_proj.weight": torch.zeros(4, 4)}, str(folder / "mtp.safetensors"))
    with pytest.raises(WeightError, match="no place in the model"):  # past the MTP layers: a real mismatch
        load_weights(model_class(config)(config, LayerSharding.single()), folder)
