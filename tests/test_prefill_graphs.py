"""Prefill steps replayed as CUDA graphs between their attention layers (engine/prefill_graphs.py): the token
buckets, which models take them, and on a GPU whole jobs through them against the eager prefill and transformers.

tests/gpu/run_prefill_graphs.sh times them (Qwen3-0.6B's host-bound prefill, Llama-3-8B's GPU-bound one).
"""

from __future__ import annotations

import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from spmd_infer.engine import engine, model_runner, prefill_graphs
from spmd_infer.models import llama
from spmd_infer.engine.engine import capture_prefill_graphs
from spmd_infer.engine.model_runner import ModelRunner, build_model
from spmd_infer.engine.prefill_graphs import (CaptureAbandoned, PrefillGraphs, capture_in_agreement, capture_meta,
                                              prefill_bucket, prefill_buckets)
from spmd_infer.failure import FAULT_ENV, TESTING_ENV, FaultHook
from spmd_infer.parallel.dp_meta import DPMeta, Field, Phase, make_row
from spmd_infer.parallel.sharding import LayerSharding
from support.launch import GPU_JOB, REPO, run_jobs, torchrun
from support.tiny_models import MAX_NEW, _configs, build_model as build_tiny_model, read_output


def test_buckets_cover_every_step_up_to_the_budget_with_bounded_padding():
    assert prefill_buckets(64) == [16, 32, 64]
    assert prefill_buckets(100) == [16, 32, 64, 100]  # the budget itself is the largest bucket
    buckets = prefill_buckets(8192)
    assert buckets[0] == 16 and buckets[-1] == 8192 and buckets == sorted(set(buckets))
    for tokens in range(1, 8193):
        bucket = prefill_bucket(buckets, tokens)
        assert bucket >= tokens and (bucket <= 16 or bucket - tokens < bucket / 2)
    assert prefill_bucket(buckets, 8193) is None  # past the budget: eager
    assert prefill_bucket(buckets, 0) == 16


def test_only_host_bound_step_sizes_get_graphs():
    """Steps whose GEMMs outlast the host's launches run eagerly: a model's larger buckets drop as its layers grow."""
    assert prefill_buckets(8192, 15.7e6) == prefill_buckets(8192)  # Qwen3-0.6B: every bucket
    assert prefill_buckets(16384, 218e6)[-1] == 1024  # Llama-3-8B: small steps only
    assert prefill_buckets(8192, 50e6)[-1] == 4096  # Qwen3-1.7B
    assert prefill_buckets(8192, 1e12) == []


def test_the_capture_meta_has_every_dp_rank_prefill_the_bucket():
    meta = capture_meta(512)
    assert meta.dp == 1 and meta.num_tokens == [512] and meta.get(Field.PHASE) == Phase.PREFILL
    meta = capture_meta(256, dp=4)
    assert meta.num_tokens == [256] * 4 and meta.column(Field.PHASE) == [Phase.PREFILL] * 4


def _meta(*ranks: tuple[Phase, int]) -> DPMeta:
    return DPMeta(rows=torch.stack([make_row(num_tokens=n, phase=p) for p, n in ranks]), dp_rank=0)


def test_dp_attention_ranks_share_one_bucket_decided_from_dp_meta_alone():
    """Under DP attention, in a step that any DP rank prefills, every DP rank replays the bucket of the rank with the
    most tokens, one that decodes or idles too; a step that none prefills (decode graphs' turn), or one past the
    largest bucket, runs without them everywhere."""
    graphs = PrefillGraphs([16, 64, 256], torch.device("cpu"), pool=object(), dp=2)
    assert graphs.valid is not None  # the exchange marks padding rows for dense models too
    P, D, I = Phase.PREFILL, Phase.DECODE, Phase.IDLE
    assert graphs.shared_bucket(_meta((P, 40), (P, 200))) == 256
    assert graphs.shared_bucket(_meta((P, 40), (I, 0))) == 64
    assert graphs.shared_bucket(_meta((I, 0), (P, 3))) == 16
    assert graphs.shared_bucket(_meta((P, 40), (D, 7))) == 64  # the decoding rank replays it too
    assert graphs.shared_bucket(_meta((D, 200), (P, 7))) == 256
    assert graphs.shared_bucket(_meta((D, 40), (D, 7))) is None
    assert graphs.shared_bucket(_meta((I, 0), (I, 0))) is None
    assert graphs.shared_bucket(_meta((P, 257), (P, 3))) is None
    batch = SimpleNamespace(is_prefill=True, slot_mapping=None, num_tokens=3, dp_meta=_meta((P, 3), (P, 100)))
    assert graphs.bucket_for(batch) == 256  # the step's, not this rank's own 3 tokens
    decoding = SimpleNamespace(is_prefill=False, slot_mapping=torch.zeros(5), num_tokens=5,
                               dp_meta=_meta((D, 5), (P, 100)))
    assert graphs.bucket_for(decoding) == 256  # a decoding rank replays the prefilling rank's bucket
    alone = PrefillGraphs([16, 64, 256], torch.device("cpu"), pool=object())
    batch.slot_mapping = torch.zeros(3)
    assert alone.bucket_for(batch) == 16 and alone.valid is None


def test_an_idle_dp_rank_joins_the_step_the_others_replay(monkeypatch):
    """An idle rank's dummy share of a DP-attention step (ModelRunner.run_dummy): the decode graph's padding where
    every rank can graph, the shared prefill bucket's padding rows where some rank prefills, else one eager token."""
    runner = ModelRunner.__new__(ModelRunner)
    runner.prefill_graphs = PrefillGraphs([16, 64, 256], torch.device("cpu"), pool=object(), dp=3)
    ran = []
    monkeypatch.setattr(runner.prefill_graphs, "forward_padding", lambda bucket: ran.append(("prefill graphs", bucket)))
    runner.graphs = SimpleNamespace(load_padding=lambda bucket, meta: None,
                                    replay=lambda bucket, rows: ran.append(("decode graph", bucket)))
    runner.forward_logits = lambda fb: ran.append(("eager", fb))
    runner.dummy_batch = lambda meta: "one padding token"
    P, D, I = Phase.PREFILL, Phase.DECODE, Phase.IDLE
    runner.run_dummy(_meta((I, 0), (P, 40), (I, 0)), None)
    runner.run_dummy(_meta((I, 0), (D, 7), (P, 200)), None)
    runner.run_dummy(_meta((I, 0), (D, 7), (D, 9)), 16)
    runner.run_dummy(_meta((I, 0), (P, 300), (D, 9)), None)  # past the largest bucket: every rank eager
    assert ran == [("prefill graphs", 64), ("prefill graphs", 256), ("decode graph", 16),
                   ("eager", "one padding token")]


def test_an_idle_rank_pads_prefill_graphs_built_under_inference_mode():
    """The prefill graphs are built while a step captures them, under inference mode, so their static inputs are
    inference tensors; an idle rank's padding rows write into them from the step loop, outside it (2 x H200,
    session 29: "Inplace update to inference tensor outside InferenceMode")."""
    with torch.inference_mode():
        graphs = PrefillGraphs([16, 64], torch.device("cpu"), pool=object(), dp=2)
    graphs.pieces[64] = []  # no recorded pieces to replay on a CPU: the padding rows are what is checked
    runner = ModelRunner.__new__(ModelRunner)
    runner.prefill_graphs = graphs
    runner.run_dummy(_meta((Phase.IDLE, 0), (Phase.PREFILL, 40)), None)
    assert graphs.replays["idle"] == 1
    assert (graphs.ints[2, :64] == -1).all() and not graphs.valid[:64].any()


@pytest.mark.parametrize("name, moe", [("llama", False), ("qwen3", False), ("qwen3moe", True), ("qwen2moe", True),
                                       ("dsv2", True)])
def test_which_models_take_prefill_graphs(name, moe, monkeypatch):
    """Paged GQA and MLA attention both hand their prefill to the replay, dense and MoE layers alike (unless
    SPMD_PREFILL_GRAPHS_MOE=0). The gate reads the model alone: any DP mode takes them (DP attention's shared bucket
    below)."""
    if name == "dsv2":
        from support.tiny_models import DEEPSEEK
        from transformers import DeepseekV2Config
        config = DeepseekV2Config(**DEEPSEEK)
    else:
        config = _configs()[name]
    config.architectures = [{"llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM",
                             "qwen3moe": "Qwen3MoeForCausalLM", "qwen2moe": "Qwen2MoeForCausalLM",
                             "dsv2": "DeepseekV2ForCausalLM"}[name]]
    runner = ModelRunner.__new__(ModelRunner)  # the gate reads the model only: no weights loaded
    runner.device = torch.device("cpu")
    runner.model = build_model(config, LayerSharding.single(), torch.float32, "cpu")
    runner.cache_owners = [m for m in runner.model.modules() if hasattr(m, "kv_cache_dims")]
    assert runner.prefill_graphs_unfit() == "no CUDA"
    monkeypatch.setattr(ModelRunner, "graph_safe", property(lambda self: True))
    assert runner.prefill_graphs_unfit() is None
    monkeypatch.setattr(model_runner, "PREFILL_GRAPHS_MOE", False)  # SPMD_PREFILL_GRAPHS_MOE=0
    unfit = runner.prefill_graphs_unfit()
    assert unfit is None if not moe else "SPMD_PREFILL_GRAPHS_MOE=0" in unfit
    runner.cache_owners.append(torch.nn.Module())  # a cache owner that cannot hand its prefill over
    assert "AttentionSplit" in runner.prefill_graphs_unfit()


def test_a_layers_weights_count_its_experts_top_k_share():
    """MoE layers cost each token top_k of num_experts experts' weights: what decides their host-bound buckets."""
    config = _configs()["qwen3moe"]
    config.architectures = ["Qwen3MoeForCausalLM"]
    runner = ModelRunner.__new__(ModelRunner)
    runner.model = build_model(config, LayerSharding.single(), torch.float32, "cpu")
    runner.cache_owners = [m for m in runner.model.modules() if hasattr(m, "kv_cache_dims")]
    h, heads, kv_heads, d = config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim
    attention = h * (heads + 2 * kv_heads) * d + heads * d * h
    dense_mlp = 3 * h * config.intermediate_size  # layer 0 (mlp_only_layers)
    experts = config.num_experts_per_tok * 3 * h * config.moe_intermediate_size  # top-k of the experts, a token
    assert runner.layer_weights() == pytest.approx((2 * attention + dense_mlp + experts) / 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs")
@pytest.mark.parametrize("model, prompts, extra", [("qwen3", "long", ()), ("llama", "shared", ()),
                                                   ("llama", "long", ("sampling.prompt_logprobs=2",)),
                                                   ("llama", "shared", ("unfused store",))])
def test_jobs_through_prefill_graphs_match_the_eager_prefill(model, prompts, extra, job, tiny, tmp_path, monkeypatch):
    """Chunked prefills (a 200-token prompt over a 64-token budget), cached prefixes, prompts scored from every
    prefill row, several buckets, k and v handed to attention for its store (SPMD_ROTARY_STORE_KV=0): the tokens
    (and prompt log-probabilities) of a job whose prefill steps replay graphs are the eager prefill's."""
    if "unfused store" in extra:
        monkeypatch.setattr(llama, "FUSE_ROTARY_STORE", False)
        extra = ()
    replays = []
    forward = PrefillGraphs.forward
    monkeypatch.setattr(PrefillGraphs, "forward",
                        lambda self, bucket, fb: replays.append((bucket, fb.num_tokens)) or forward(self, bucket, fb))
    args = (f"model.path={tiny['models'][model]}", f"data.input={tiny['inputs'][prompts]}",
            f"sampling.max_tokens={MAX_NEW}", GPU_JOB, *extra)
    job(*args, f"data.output={tmp_path / 'eager.jsonl'}", "runtime.prefill_graphs=false")
    assert not replays
    job(*args, f"data.output={tmp_path / 'graphs.jsonl'}")
    assert replays and all(n <= bucket for bucket, n in replays)
    assert len({bucket for bucket, _ in replays}) > 1, replays
    eager, graphs = (read_output(tmp_path / name) for name in ("eager.jsonl", "graphs.jsonl"))
    assert [r["token_ids"] for r in graphs] == [r["token_ids"] for r in eager]
    if extra:  # the scored prompt rows: log-probabilities within float32 rounding
        for got, want in zip(graphs, eager):
            assert got["prompt_logprobs"] and len(got["prompt_logprobs"]) == len(want["prompt_logprobs"])
            for g, w in zip(got["prompt_logprobs"], want["prompt_logprobs"]):
                assert (g is None) == (w is None)
                if g is not None:  # (a near tie at the k-th place may swap one key under other GEMM tilings)
                    shared = g.keys() & w.keys()
                    assert len(shared) >= 2 and all(abs(g[t] - w[t]) < 1e-3 for t in shared)


class _Runner:
    """What capture_prefill_graphs asks of the model runner: the gate and the capture."""

    device = torch.device("cpu")

    def __init__(self, capture_error=None, others_ok=True):
        self.capture_error, self.others_ok, self.dropped, self.prefill_graphs = capture_error, others_ok, 0, None

    def prefill_graphs_unfit(self):
        return None

    def capture_prefill_graphs(self, max_tokens, dp_attention, all_ok, fault=None):
        def capture(bucket):  # the smaller bucket fails, after the larger one was captured
            if bucket == 16 and self.capture_error is not None:
                raise self.capture_error

        capture_in_agreement([16, 32], capture, all_ok)
        self.prefill_graphs = SimpleNamespace(num_graphs=3)
        return [16, 32]

    def drop_prefill_graphs(self):
        self.dropped += 1
        self.prefill_graphs = None


@pytest.mark.parametrize("error, others_ok", [(None, True), (RuntimeError("CUDA error: operation not permitted when "
                                                                            "stream is capturing\nmore"), True),
                                              (torch.OutOfMemoryError("no room"), True), (None, False)])
def test_a_failed_capture_on_any_rank_leaves_every_rank_prefilling_eagerly(error, others_ok, caplog, monkeypatch):
    cfg = SimpleNamespace(parallel=SimpleNamespace(dp_attention=False),
                          scheduler=SimpleNamespace(max_num_batched_tokens=32))
    runner = _Runner(error, others_ok)
    monkeypatch.setattr(engine, "all_captured", lambda ok, group, wait_s: ok and others_ok)  # the others' votes
    with caplog.at_level("INFO"):
        capture_prefill_graphs(cfg, runner, SimpleNamespace(world_size=1))
    if error is None and others_ok:
        assert runner.prefill_graphs is not None and not runner.dropped
        assert "captured 3 prefill CUDA graphs" in caplog.text
    else:
        assert runner.prefill_graphs is None and runner.dropped
        reason = "another rank's capture failed" if error is None else type(error).__name__
        assert f"prefill CUDA graphs dropped, prefill steps run eagerly: {reason}" in caplog.text
        assert "more" not in caplog.text  # the error's first line only


def test_every_rank_stops_capturing_at_the_first_failure_on_any_rank():
    """After each bucket every rank says whether its capture succeeded, and all stop at the first failure anywhere:
    none goes on into the next bucket's warm-up forward (whose collectives run) without the others."""
    for fails_here in (True, False):
        captured = []

        def capture(bucket):
            captured.append(bucket)
            if fails_here and bucket == 64:
                raise torch.OutOfMemoryError("no room\nmore")

        others_ok = iter([True, fails_here])  # without a failure here, another rank's fails at the second bucket
        with pytest.raises(CaptureAbandoned) as abandoned:
            capture_in_agreement([16, 64, 256], capture, lambda ok: ok and next(others_ok))
        assert captured == [256, 64]
        reason = "OutOfMemoryError: no room" if fails_here else "another rank's capture failed"
        assert str(abandoned.value) == reason
    captured = []
    capture_in_agreement([16, 64], captured.append, lambda ok: ok)
    assert captured == [64, 16]


def test_a_rank_whose_capture_failed_fails_the_job_when_the_others_are_stranded():
    """The vote over gloo on two ranks (support/capture_vote_worker.py): all captured; one failed, both abandon; one
    failed while the other is stranded in the bucket (as in a warm-up collective the failed rank left): the failed
    rank fails the job within the bound, naming the bucket, its error and what to change."""
    proc = torchrun(2, [str(REPO / "tests" / "support" / "capture_vote_worker.py")], timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "CAPTURE VOTE OK" in proc.stdout


def test_an_injected_capture_fault_fires_on_its_rank_at_its_bucket_only(monkeypatch):
    monkeypatch.setenv(TESTING_ENV, "1")
    monkeypatch.setenv(FAULT_ENV, "1:64:capture")
    assert FaultHook.from_env(0) is None
    hook = FaultHook.from_env(1)
    hook.check(64)  # not a step's fault
    hook.check_capture(32)
    with pytest.raises(torch.OutOfMemoryError, match="64-token prefill graphs' capture"):
        hook.check_capture(64)
    monkeypatch.setenv(FAULT_ENV, "1:64:capture:now")
    with pytest.raises(ValueError, match="RANK:BUCKET:capture"):
        FaultHook.from_env(1)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="two GPU ranks")
def test_a_capture_failing_on_one_gpu_rank_goes_eager_everywhere_or_fails_the_job_fast(tiny, tmp_path):
    """An OOM injected as rank 1 starts capturing the 64-token prefill graphs (FaultHook RANK:BUCKET:capture). At dp2
    the forward has no collectives: rank 0 captures, both vote, both prefill eagerly and the job completes. At tp2
    rank 0's warm-up forward waits in an all-reduce rank 1 never joins: rank 1's vote finds it stranded and fails the
    job within seconds, naming runtime.prefill_graphs=false, where it waited out the 600 s collective timeout."""
    env = {TESTING_ENV: "1", FAULT_ENV: "1:64:capture"}
    base = ["-m", "spmd_infer", f"model.path={tiny['models']['llama']}", f"data.input={tiny['inputs']['mixed']}",
            "sampling.temperature=0", f"sampling.max_tokens={MAX_NEW}", "scheduler.max_num_batched_tokens=64",
            "runtime.progress=false"]

    def said(proc, output: str) -> str:  # the console and every rank's log
        logs = sorted((tmp_path / f"{output}.run").glob("rank*.log"))
        return proc.stdout + proc.stderr + "".join(p.read_text() for p in logs)

    dp2 = torchrun(2, [*base, "parallel.dp=2", "data.output=dp2.jsonl"], timeout=300, cwd=tmp_path, env=env, gpus=True)
    assert dp2.returncode == 0, dp2.stdout[-3000:] + dp2.stderr[-3000:]
    assert "prefill CUDA graphs dropped, prefill steps run eagerly" in said(dp2, "dp2.jsonl")
    rows = read_output(tmp_path / "dp2.jsonl")
    assert len(rows) == len(tiny["sets"]["mixed"]) and all(r["token_ids"] for r in rows)

    tp2 = torchrun(2, [*base, "parallel.tp=2", "data.output=tp2.jsonl"], timeout=300, cwd=tmp_path, env=env, gpus=True)
    ended = datetime.datetime.now()
    text = said(tp2, "tp2.jsonl")
    assert tp2.returncode != 0, text[-4000:]
    for part in ("CaptureStranded", "64-token", "within 10 s", "runtime.prefill_graphs=false"):
        assert part in text, (part, text[-4000:])
    # Timed from rank 1's failure, not from the launch: startup (imports, Triton compiles) on a host shared with other
    # tests' jobs may take minutes. torchrun then ends rank 0, stuck in the all-reduce, with SIGKILL after its 30 s
    # grace; unbounded, the vote would have held the job until the 600 s collective timeout (past this launch's 300).
    failed_at = _logged_at(tmp_path / "tp2.jsonl.run" / "rank1.log", "rank 1 failed")
    assert (ended - failed_at).total_seconds() < 90, (failed_at, ended, text[-4000:])


def _logged_at(log: Path, message: str) -> datetime.datetime:
    """The time of the first line of `log` (the configured format: [YYYY-mm-dd HH:MM:SS,mmm][rankN]...) that holds
    `message`."""
    line = next(line for line in log.read_text().splitlines() if message in line)
    return datetime.datetime.strptime(line[1:line.index("]")], "%Y-%m-%d %H:%M:%S,%f")


@pytest.fixture(scope="module")
def deepseek_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("deepseek")
    return {name: build_tiny_model(name, root / name) for name in ("dsv2", "dsv3")}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs")
@pytest.mark.parametrize("model, prompts", [("qwen3moe", "mixed"), ("qwen2moe", "mixed"), ("mixtral", "mixed"),
                                            ("dsv2", "long"), ("dsv3", "shared")])
def test_moe_and_mla_jobs_through_prefill_graphs_match_the_eager_prefill(model, prompts, deepseek_models, job, tiny,
                                                                         tmp_path, monkeypatch):
    """MoE layers mask the padding rows from their experts, routing and fused_moe inside the pieces; MLA hands its q to
    the replay (the latents stored inside the piece) and expands the cached context of chunked prompts and shared
    prefixes between the pieces: the tokens are the eager prefill's."""
    monkeypatch.setattr(model_runner, "PREFILL_GRAPHS_MOE", True)  # whatever SPMD_PREFILL_GRAPHS_MOE says
    replays = []
    forward = PrefillGraphs.forward
    monkeypatch.setattr(PrefillGraphs, "forward",
                        lambda self, bucket, fb: replays.append(bucket) or forward(self, bucket, fb))
    folder = deepseek_models[model] if model in deepseek_models else tiny["models"][model]
    args = (f"model.path={folder}", f"data.input={tiny['inputs'][prompts]}", f"sampling.max_tokens={MAX_NEW}",
            GPU_JOB)
    job(*args, f"data.output={tmp_path / 'eager.jsonl'}", "runtime.prefill_graphs=false")
    assert not replays
    job(*args, f"data.output={tmp_path / 'graphs.jsonl'}")
    assert len(set(replays)) > 1 or prompts == "mixed", replays  # (the mixed prompts fit one step)
    assert replays
    eager, graphs = ([r["token_ids"] for r in read_output(tmp_path / name)] for name in ("eager.jsonl", "graphs.jsonl"))
    assert graphs == eager and graphs[0]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DP attention over two GPUs")
def test_two_gpu_jobs_through_prefill_graphs_match_the_eager_prefill(deepseek_models, tiny, tmp_path):
    """dp2 with DP attention, the dense Llama and DeepSeek-V2 (MLA, MoE): both DP ranks replay the busier rank's
    bucket, one with no request at all replaying padding rows ("one": a single prompt), one that decodes while the
    other prefills its decode attention between the pieces ("long": a 200-token prompt chunked over a 64-token
    budget on one rank, three short ones prefilled at once on the other). DeepSeek-V2 at tp2 too (its MoE layers'
    all-reduce inside the pieces). The tokens are the eager prefill's."""
    layouts = {"dpa": ["parallel.dp=2", "parallel.dp_attention=true"], "tp2": ["parallel.tp=2"]}
    cases = [("llama", "dpa", "one"), ("llama", "dpa", "long"), ("dsv2", "dpa", "one"), ("dsv2", "dpa", "long"),
             ("dsv2", "tp2", "long")]
    folders = {"llama": tiny["models"]["llama"], "dsv2": deepseek_models["dsv2"]}
    jobs = []
    for model, layout, prompts in cases:
        for graphs in ("true", "false"):
            name = f"{model}-{layout}-{prompts}-{graphs}"
            jobs.append({"name": name, "overrides": [
                f"model.path={folders[model]}", f"data.input={tiny['inputs'][prompts]}",
                f"data.output={tmp_path / f'{name}.jsonl'}", *layouts[layout], "sampling.temperature=0",
                f"sampling.max_tokens={MAX_NEW}", "scheduler.max_num_batched_tokens=64",
                f"runtime.prefill_graphs={graphs}"]})
    summaries = run_jobs(2, jobs, tmp_path / "spec.json", timeout=600, gpus=True)
    for job in jobs:
        case, graphs = job["name"].rsplit("-", 1)
        replays = [s[job["name"]]["prefill_graph_replays"] for s in summaries.values()]
        if graphs == "false":
            assert replays == [{}, {}]
            continue
        by_phase = {phase: [r[phase] for r in replays] for phase in ("prefill", "decode", "idle")}
        if "-tp2-" in case:  # both TP ranks run every step's prefill
            assert by_phase["prefill"][0] == by_phase["prefill"][1] > 0, (job["name"], replays)
        elif case.endswith("one"):
            assert sum(by_phase["prefill"]) > 0, (job["name"], replays)
            assert sorted(by_phase["idle"])[0] == 0 < sorted(by_phase["idle"])[1], (job["name"], replays)
        else:
            assert sum(by_phase["prefill"]) > 0 and sum(by_phase["decode"]) > 0, (job["name"], replays)  # mixed steps
        tokens = [[r["token_ids"] for r in read_output(tmp_path / f"{case}-{g}.jsonl")] for g in ("true", "false")]
        assert tokens[0] == tokens[1] and tokens[0][0], case


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs")
def test_a_capture_failing_inside_a_graph_leaves_the_job_prefilling_eagerly(job, tiny, tmp_path, monkeypatch):
    """The stream leaves capture mode (the capture is abandoned), the graphs are dropped and the job runs on."""
    attention = prefill_graphs._PieceRecorder.__call__

    def failing(self, *args):
        if self.record:  # the first attention of a capture, while the stream records its first piece
            raise RuntimeError("a kernel that cannot be captured")
        return attention(self, *args)

    monkeypatch.setattr(prefill_graphs._PieceRecorder, "__call__", failing)
    replays = []
    monkeypatch.setattr(PrefillGraphs, "forward", lambda self, bucket, fb: replays.append(bucket))
    args = (f"model.path={tiny['models']['llama']}", f"data.input={tiny['inputs']['mixed']}",
            f"sampling.max_tokens={MAX_NEW}", GPU_JOB)
    job(*args)
    job(*args, f"data.output={tmp_path / 'eager.jsonl'}", "runtime.prefill_graphs=false")
    assert not replays
    tokens = [[r["token_ids"] for r in read_output(tmp_path / name)] for name in ("out.jsonl", "eager.jsonl")]
    assert tokens[0] == tokens[1] and tokens[0]
