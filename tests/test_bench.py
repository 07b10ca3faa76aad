"""The benchmark: byte/FLOP counts against hand-computed values, and `python -m spmd_infer.bench` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from spmd_infer.bench.ceilings import Ceilings, sheet_bandwidth
from spmd_infer.bench.cost import ModelCost, MoeLayerCost, causal_pairs
from spmd_infer.bench.measure import StepRecord, allocator_counts, allocator_delta, case_metrics, median_run
from spmd_infer.bench.report import console_lines
from spmd_infer.bench.workloads import Case
from spmd_infer.models.registry import model_class
from spmd_infer.parallel.dp_meta import Phase
from spmd_infer.parallel.sharding import LayerSharding
from support.launch import launch_env, torchrun

H, I, L, HEADS, KV, D, V = 64, 96, 2, 8, 4, 8, 301  # hidden, intermediate, layers, heads, KV heads, head dim, vocab


def _model(cfg, sharding=None):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        return model_class(cfg)(cfg, sharding or LayerSharding.single())
    finally:
        torch.set_default_dtype(previous)


@pytest.fixture(scope="module")
def llama_cost():
    from transformers import LlamaConfig

    cfg = LlamaConfig(vocab_size=V, hidden_size=H, intermediate_size=I, num_hidden_layers=L, num_attention_heads=HEADS,
                      num_key_value_heads=KV, max_position_embeddings=256, tie_word_embeddings=False,
                      architectures=["LlamaForCausalLM"])
    return ModelCost.from_model(_model(cfg), kv_bytes_per_token=L * 2 * KV * D * 4)


def test_dense_weight_bytes_and_flops(llama_cost):
    c = llama_cost
    attn = L * (H * (HEADS + 2 * KV) * D + HEADS * D * H)  # q, k, v and o projections
    mlp = L * (2 * I * H + I * H)  # gate + up, down
    norms = (2 * L + 1) * H
    assert (c.attn_params, c.mlp_params, c.lm_head_params) == (attn, mlp, V * H)
    assert (c.attn_bytes, c.mlp_bytes, c.lm_head_bytes, c.embed_row_bytes) == (4 * (attn + norms), 4 * mlp,
                                                                               4 * V * H, 4 * H)
    # Decode of 3 sequences: every weight once, the LM head (rows sampled), 3 embedding rows.
    assert c.weight_bytes(tokens=3, mlp_tokens=3, sampled=3) == 4 * (attn + norms + mlp + V * H + 3 * H)
    assert c.weight_bytes(tokens=3, mlp_tokens=3, sampled=0) == 4 * (attn + norms + mlp + 3 * H)  # a prefill chunk
    assert c.kv_bytes([9, 10]) == 19 * L * 2 * KV * D * 4
    # Prefill of a fresh 5-token prompt and a 3-token chunk ending at position 10, both sampled.
    pairs = (1 + 2 + 3 + 4 + 5) + (8 + 9 + 10)
    assert causal_pairs(5, 5) + causal_pairs(3, 10) == pairs
    expected = 2 * (attn + mlp) * 8 + 2 * V * H * 2 + L * 4 * HEADS * D * pairs
    assert c.flops([(5, 5), (3, 10)], mlp_tokens=8, sampled=2, prefill=True) == expected


def test_moe_counts_only_the_experts_tokens_reach():
    from transformers import Qwen3MoeConfig

    e, k, mi = 8, 2, 32
    cfg = Qwen3MoeConfig(vocab_size=V, hidden_size=H, intermediate_size=I, moe_intermediate_size=mi, num_experts=e,
                         num_experts_per_tok=k, decoder_sparse_step=1, mlp_only_layers=[0], num_hidden_layers=L,
                         num_attention_heads=HEADS, num_key_value_heads=KV, head_dim=D, max_position_embeddings=256,
                         tie_word_embeddings=False, architectures=["Qwen3MoeForCausalLM"])
    c = ModelCost.from_model(_model(cfg), kv_bytes_per_token=1)
    (layer,) = c.moe  # layer 0 is dense (mlp_only_layers), layer 1 has the experts
    assert (layer.num_experts, layer.num_local, layer.top_k) == (e, e, k)
    assert layer.expert_params == 3 * mi * H and layer.expert_bytes == 4 * 3 * mi * H
    assert c.mlp_params == 3 * I * H + e * H  # the dense layer's MLP and the router
    # One token reads its top-k experts; two tokens miss a given expert with probability (6/8)^2.
    assert layer.expected_active(1) == pytest.approx(2.0)
    assert layer.expected_active(2) == pytest.approx(8 * (1 - 0.75**2))
    assert layer.expected_active(10**4) == pytest.approx(8.0)
    base = c.weight_bytes(tokens=2, mlp_tokens=2, sampled=0)
    assert base - c.weight_bytes(tokens=2, mlp_tokens=0, sampled=0) == pytest.approx(3.5 * layer.expert_bytes)
    # FLOPs: each of 3 tokens runs k experts.
    dense = c.flops([(3, 3)], mlp_tokens=3, sampled=0, prefill=True)
    assert dense - c.flops([(3, 3)], mlp_tokens=0, sampled=0, prefill=True) == pytest.approx(
        2 * 3 * (3 * I * H + e * H) + 2 * 3 * k * 3 * mi * H)
    # Float8 experts (model.expert_dtype=fp8): a byte a weight plus a float32 scale per block (32 x 128 here: rows
    # cut to the 32-row gate / up boundary), the rest as before.
    fp8 = ModelCost.from_model(_model(cfg, LayerSharding.single(fp8_expert_block=(128, 128))), kv_bytes_per_token=1)
    (fp8_layer,) = fp8.moe
    blocks = (2 * mi // 32) * -(-H // 128) + (H // 32) * -(-mi // 128)  # w13 [2 mi, H] and w2 [H, mi]
    assert fp8_layer.expert_params == layer.expert_params
    assert fp8_layer.expert_bytes == 3 * mi * H + 4 * blocks
    assert (fp8.mlp_params, fp8.mlp_bytes, fp8.attn_bytes) == (c.mlp_params, c.mlp_bytes, c.attn_bytes)
    # Expert parallelism over 2 ranks: half the experts are local, and so is half the expected traffic.
    ep = MoeLayerCost(num_experts=e, num_local=e // 2, top_k=k, expert_params=1, expert_bytes=1)
    assert ep.expected_active(1) == pytest.approx(1.0) and ep.expected_active(2) <= min(4, 2 * k)


def test_case_metrics_mbu_and_mfu_arithmetic():
    cost = ModelCost(attn_params=100, attn_bytes=1000, lm_head_params=10, lm_head_bytes=50, kv_bytes_per_token=2,
                     attn_pair_flops=[(4, 4)])
    ceil = Ceilings(bandwidth_bytes_per_s=1e4, matmul_flops_per_s=1e5, dtype="float32", copy_bytes=1, matmul_n=1,
                    device="cpu")
    records = [
        StepRecord(0.01, 0.001, Phase.IDLE, [0], [Phase.IDLE]),
        StepRecord(0.5, 0.001, Phase.PREFILL, [16], [Phase.PREFILL], chunks=[(8, 8), (8, 8)], sampled=2),
        StepRecord(0.1, 0.001, Phase.DECODE, [2], [Phase.DECODE], chunks=[(1, 9), (1, 9)], sampled=2),
        StepRecord(0.3, 0.001, Phase.DECODE, [2], [Phase.DECODE], chunks=[(1, 10), (1, 10)], sampled=2),
    ]

    class Source:
        first_token_at = {0: 0.5, 1: 0.51}

    case = Case("grid", "grid 2x8+3", [8, 8], [3, 3])
    m = case_metrics(case, records, Source(), wall=1.0, cost=cost, ceilings=ceil, dp_attention=False,
                     num_preemptions=0)
    weights = 2 * (1000 + 50)  # two decode steps (embedding rows cost nothing here)
    kv = 2 * (18 + 20)
    assert m["decode"]["mbu"] == pytest.approx((weights + kv) / 0.4 / 1e4)
    assert m["decode"]["median_step_s"] == pytest.approx(0.2) and m["decode"]["tok_s"] == pytest.approx(4 / 0.4)
    flops = 2 * (100 * 16 + 10 * 2) + 4 * 2 * 36
    assert m["prefill"]["flops"] == flops and m["prefill"]["mfu"] == pytest.approx(flops / 0.5 / 1e5)
    assert m["exchange_share"] == pytest.approx(0.004 / 0.91)
    assert m["exchange_collective_share"] == pytest.approx(0.004 / 0.91) and m["dp_wait_share"] == 0
    assert m["output_tok_s"] == 6 and m["total_tok_s"] == 22 and m["ttft_s"]["max"] == 0.51
    assert "dp_ranks" not in m  # one DP rank: nothing to compare


def test_case_metrics_count_a_step_that_settles_an_overlapped_prefill_as_prefill_time():
    """runtime.overlap_prefill: the step that waits for an in-flight prefill's tokens carries that prefill's GPU time,
    so its seconds are prefill seconds and it stays out of the decode rate and MBU."""
    cost = ModelCost(attn_params=1, attn_bytes=100, lm_head_params=1, lm_head_bytes=0, kv_bytes_per_token=0,
                     attn_pair_flops=[(1, 1)])
    ceil = Ceilings(1e4, 1e5, "float32", 1, 1, "cpu")
    dec = [Phase.DECODE]
    records = [
        StepRecord(0.05, 0.0, Phase.PREFILL, [8], [Phase.PREFILL], chunks=[(8, 8)], sampled=1, launch_seconds=0.01),
        StepRecord(0.45, 0.0, Phase.DECODE, [1], dec, chunks=[(1, 9)], sampled=1, settled_prefill=True),
        StepRecord(0.1, 0.0, Phase.DECODE, [1], dec, chunks=[(1, 10)], sampled=1),
        StepRecord(0.1, 0.0, Phase.DECODE, [1], dec, chunks=[(1, 11)], sampled=1),
    ]

    class Source:
        first_token_at = {0: 0.5}

    m = case_metrics(Case("decode", "decode bs1 @8", [8], [4]), records, Source(), wall=0.7, cost=cost,
                     ceilings=ceil, dp_attention=False, num_preemptions=0)
    assert m["prefill"]["seconds"] == pytest.approx(0.5) and m["prefill"]["steps"] == 1
    assert m["decode"]["steps"] == 2 and m["decode"]["tok_s"] == pytest.approx(2 / 0.2)
    assert m["decode"]["mbu"] == pytest.approx(2 * 100 / 0.2 / 1e4)
    # A prefill-only case: the step that finds nothing left to run settles the last prefill's tokens.
    records = [records[0], StepRecord(0.3, 0.0, Phase.IDLE, [0], [Phase.IDLE], settled_prefill=True)]
    m = case_metrics(Case("grid", "grid 1x8+1", [8], [1]), records, Source(), wall=0.4, cost=cost, ceilings=ceil,
                     dp_attention=False, num_preemptions=0)
    assert m["prefill"]["seconds"] == pytest.approx(0.35) and "decode" not in m
    assert m["prefill"]["step_s"] == [0.05, 0.3]
    assert m["prefill"]["launch_s"] == [0.01, 0.0]  # the host's share of each, to its forward's launch (none: 0)
    assert m["prefill"]["wait_s"] == [0.0, 0.0]  # ... of which waiting for slower DP ranks


def test_case_metrics_sum_each_dp_ranks_work_and_idle_steps():
    """dp > 1: each rank's own work (Field.WORK_US, per step) summed, and the steps each rank sat out."""
    cost = ModelCost(attn_params=1, attn_bytes=1, lm_head_params=1, lm_head_bytes=1, kv_bytes_per_token=1,
                     attn_pair_flops=[(1, 1)])
    ceil = Ceilings(1e4, 1e5, "float32", 1, 1, "cpu")
    both = [Phase.DECODE, Phase.DECODE]
    records = [
        StepRecord(0.2, 0.1, Phase.DECODE, [2, 2], both, chunks=[(1, 9)], dp_work_us=[100_000, 200_000]),
        # DP rank 1 waits for its overlapped prefill's first tokens here: not a decode step for anyone.
        StepRecord(0.2, 0.1, Phase.DECODE, [2, 2], both, chunks=[(1, 10)], dp_work_us=[100_000, 200_000],
                   dp_settles_prefill=[0, 1]),
        StepRecord(0.2, 0.0, Phase.IDLE, [0, 2], [Phase.IDLE, Phase.DECODE], dp_work_us=[5_000, 200_000]),
    ]

    class Source:
        first_token_at = {0: 0.1}

    m = case_metrics(Case("decode", "decode bs2 @8", [8, 8], [3, 3]), records, Source(), wall=0.6, cost=cost,
                     ceilings=ceil, dp_attention=False, num_preemptions=0)
    assert m["dp_ranks"] == {"work_s": [pytest.approx(0.205), pytest.approx(0.6)], "idle_steps": [1, 0]}
    assert m["decode"]["steps"] == 2 and m["decode"]["tok_s"] == pytest.approx(6 / 0.4)
    lines = console_lines({**_report([{**_decode_case(100.0, 0.2, 0.5), "dp_ranks": m["dp_ranks"]}])})
    assert "  decode bs1 @1024, DP ranks: own work 0.20 / 0.60 s; steps with nothing to run 1 / 0" in lines


def _report(cases: list[dict], copy_rate: float = 4.2e12) -> dict:
    """A benchmark report as run.py assembles it, around the given cases (Llama-3-8B on an H200)."""
    return {"model": {"name": "llama-3-8b", "architecture": "LlamaForCausalLM", "dtype": "bfloat16",
                      "cost": {"weight_bytes_per_rank": 15e9, "kv_bytes_per_token": 131072}},
            "layout": {"dp": 1, "tp": 1, "dp_attention": False}, "startup": {"load_s": 1.0}, "cases": cases,
            "ceilings": Ceilings(copy_rate, 7.8e14, "bfloat16", 1 << 32, 8192, "NVIDIA H200",
                                 sheet_bandwidth("NVIDIA H200")).to_json()}


def _decode_case(out_tok_s: float, step_s: float, mbu: float) -> dict:
    return {"name": "decode bs1 @1024", "output_tok_s": out_tok_s, "total_tok_s": 6100.0, "ttft_s": {"median": 0.027},
            "decode": {"median_step_s": step_s, "mbu": mbu, "bytes_per_s": 3.43e12}, "exchange_share": 0.01,
            "prefill": {"seconds": out_tok_s / 1e4, "step_s": [out_tok_s / 1e4]}}


def test_repeated_runs_report_the_median_run_and_every_run():
    runs = [_decode_case(183, 0.0046, 0.794), _decode_case(192, 0.0045, 0.831), _decode_case(175, 0.0047, 0.776)]
    chosen = median_run(runs)
    assert chosen["output_tok_s"] == 183 and chosen["decode"]["mbu"] == 0.794  # the median run, whole
    assert [r["output_tok_s"] for r in chosen["runs"]] == [183, 192, 175]  # every run, in run order
    assert chosen["runs"][1] == {"output_tok_s": 192, "decode_median_step_s": 0.0045, "decode_mbu": 0.831,
                                 "prefill_s": 0.0192, "prefill_step_s": [0.0192], "prefill_launch_s": None,
                                 "gc_full": None, "allocator": None}
    assert median_run(runs[:2])["output_tok_s"] == 183  # an even count takes the lower middle
    single = median_run(runs[:1])
    assert single == runs[0] and "runs" not in single and single is not runs[0]
    lines = console_lines(_report([chosen]))
    assert "  decode bs1 @1024, 3 runs: out tok/s 183 / 192 / 175; decode step 4.6ms / 4.5ms / 4.7ms; " \
           "MBU 79.4% / 83.1% / 77.6%" in lines
    assert not any("runs:" in line for line in console_lines(_report([single])))
    # Full garbage collections in a run get a line (none here: no line).
    assert not any("garbage" in line for line in lines)
    chosen["runs"][2]["gc_full"] = {"collections": 1, "seconds": 0.21}
    assert "  decode bs1 @1024, full garbage collections: 0 in 0.00 s / 0 in 0.00 s / 1 in 0.21 s" \
        in console_lines(_report([chosen]))
    # So does the caching allocator's synchronising work (none above: no line).
    assert not any("allocator" in line for line in lines)
    chosen["runs"][1]["allocator"] = {"retries": 1, "device_allocs": 4, "device_frees": 2}
    assert "  decode bs1 @1024, allocator: 0 retries, 0 cudaMalloc, 0 cudaFree / 1 retries, 4 cudaMalloc, 2 cudaFree" \
        " / 0 retries, 0 cudaMalloc, 0 cudaFree" in console_lines(_report([chosen]))


def test_allocator_counters_rise_by_run():
    """A run's allocator figures are how much each counter rose in it; none off CUDA."""
    before = {"retries": 1, "device_allocs": 10, "device_frees": 4}
    after = {"retries": 3, "device_allocs": 10, "device_frees": 7}
    assert allocator_delta(before, after) == {"retries": 2, "device_allocs": 0, "device_frees": 3}
    assert allocator_delta(None, after) is None
    assert allocator_counts(torch.device("cpu")) is None
    if torch.cuda.is_available():
        counts = allocator_counts(torch.device("cuda"))
        assert set(counts) == {"retries", "device_allocs", "device_frees"} and min(counts.values()) >= 0


def test_console_warns_when_the_copy_rate_beats_the_data_sheet():
    assert sheet_bandwidth("NVIDIA H200") == 4.8e12 and sheet_bandwidth("NVIDIA H100 80GB HBM3") == 3.35e12
    assert sheet_bandwidth("NVIDIA H100 PCIe") == 2.0e12 and sheet_bandwidth("cpu (x86_64, 2 threads)") is None
    case = _decode_case(190.0, 0.0045, 0.6)

    def lines(copy_rate):
        return console_lines(_report([case], copy_rate))

    assert not any(line.startswith("warning") for line in lines(4.2e12))
    assert any(line.startswith("warning: the measured copy rate is above") for line in lines(5.5e12))
    assert any("3.43" in line for line in lines(4.2e12) if line.startswith("decode bs1"))  # the dec TB/s column


def _bench(cmd: list[str], cwd, timeout: float = 240) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=launch_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "MBU" in proc.stdout and "results:" in proc.stdout
    return proc


TINY_WORKLOADS = ["bench.num_seqs=4", "bench.min_len=4", "bench.max_input_len=16", "bench.max_output_len=12",
                  "bench.grid_batch_sizes=[2]", "bench.input_lens=[8]", "bench.output_lens=[1,4]",
                  "bench.batch_sizes=[1,3]", "bench.context=16", "bench.decode_steps=4",
                  "scheduler.max_num_batched_tokens=64", "bench.ceiling_repeats=3"]


def test_bench_cli_on_cpu_with_load_and_hf_baseline(tmp_path):
    out = tmp_path / "bench.json"
    proc = _bench([sys.executable, "-m", "spmd_infer.bench", "bench.preset=tiny", "bench.workload=all",
                   "bench.load=true", "bench.baseline=hf", "bench.hf_orders=[given,output_length]", "bench.repeats=2",
                   "runtime.overlap_prefill=true",  # first tokens (TTFT) reach the host a step late
                   f"bench.output={out}", *TINY_WORKLOADS], tmp_path)
    r = json.loads(out.read_text())
    assert all(len(c["runs"]) == 2 for c in r["cases"]) and ", 2 runs: out tok/s " in proc.stdout
    assert r["ceilings"]["bandwidth_bytes_per_s"] > 0 and r["ceilings"]["matmul_flops_per_s"] > 0
    assert r["startup"]["load_s"] > 0 and r["startup"]["checkpoint_write_s"] > 0 and r["startup"]["warmup_s"] > 0
    assert r["model"]["cost"]["weight_bytes_per_rank"] > 0 and r["model"]["cost"]["kv_bytes_per_token"] > 0
    assert [c["workload"] for c in r["cases"]] == ["nano_vllm", "grid", "grid", "decode", "decode"]
    assert r["engine"]["overlap_prefill"] is True
    assert r["engine"]["prefill_graph_tokens"] == 0  # CPU: every prefill step eager
    for c in r["cases"]:
        assert c["output_tok_s"] > 0 and c["total_tok_s"] > c["output_tok_s"] and c["ttft_s"]["median"] > 0
        assert 0 <= c["exchange_share"] < 1 and c["prefill"]["mfu"] > 0
        # Each prefill step's host time to its forward's launch: none on a CPU, which runs the forward as it is called.
        assert c["prefill"]["launch_s"] == [0.0] * len(c["prefill"]["step_s"])
        assert c["hf"]["output_tok_s"] > 0 and c["vs_hf"]["output_tok_s"] > 0
        if c["name"] != "grid 2x8+1":  # one output token: prefill only
            assert c["decode"]["median_step_s"] > 0 and 0 < c["decode"]["mbu"] and c["decode"]["tok_s"] > 0
    # Four decode steps, the first of which waited for the overlapped prefill's tokens: its time is prefill time.
    assert r["cases"][-1]["decode"]["steps"] == 3 and r["cases"][-1]["hf"]["decode_step_s"] > 0
    # nano-vllm's mixed lengths ran through generate() in both orders, the first listed as the headline; the
    # uniform cases once.
    nano = r["cases"][0]
    assert list(nano["hf_by_order"]) == ["given", "output_length"] and nano["hf"]["order"] == "given"
    assert nano["vs_hf"] == nano["hf_by_order"]["given"]["vs_engine"]
    assert all(o["generated_tokens"] >= 4 * 4 for o in nano["hf_by_order"].values())
    # each case warmed up once, untimed, before its first order
    assert all(c["hf"]["warmup_s"] > 0 for c in r["cases"])
    assert len({o["warmup_s"] for o in nano["hf_by_order"].values()}) == 1
    assert all("hf_by_order" not in c for c in r["cases"][1:])
    assert "nano_vllm" in proc.stdout and "transformers by prompt order: given order" in proc.stdout


def test_bench_dp2_dp_attention_moe_under_torchrun(tmp_path):
    """DP attention over two ranks with float8 experts, from random weights written as a block-float8 checkpoint
    (bench.checkpoint_format=fp8: DeepSeek-V3's release format) and read back by the real loader."""
    out = tmp_path / "bench.json"
    proc = torchrun(2, ["-m", "spmd_infer.bench", "bench.preset=tiny-moe", "bench.workload=decode", "parallel.dp=2",
                        "parallel.dp_attention=true", "bench.baseline=hf", "model.expert_dtype=fp8",
                        "bench.load=true", "bench.checkpoint_format=fp8", "bench.profile=true",
                        "bench.profile_phase=prefill", "bench.overlap_prefill_ab=true", f"bench.output={out}",
                        *TINY_WORKLOADS],
                    cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["layout"] == {"dp": 2, "tp": 1, "dp_attention": True, "moe": "ep", "world_size": 2, "all_reduce": "none",
                           "dp_exchange": "gloo"}  # DP attention's gather and scatter (CPU: gloo)
    assert r["model"]["expert_dtype"] == "fp8" and r["kv_cache"]["dtype"] == "auto"
    assert r["model"]["fp8_experts"] and r["model"]["checkpoint_format"] == "fp8" and r["startup"]["load_s"] > 0
    assert "(Qwen3MoeForCausalLM, float32, float8 experts, " in proc.stdout  # the console says what ran
    assert "one GPU" in r["baseline_skipped"] and r["model"]["cost"]["moe_layers"] == 2
    # bench.overlap_prefill_ab: each case's runs with prefill steps settled at once (runtime.overlap_prefill on by
    # default, so flipped off) follow it as a row of their own.
    names = [c["name"] for c in r["cases"]]
    assert names == [n for base in ("decode bs1 @16", "decode bs3 @16")
                     for n in (base, f"{base} [overlap_prefill=off]")]
    assert [c.get("overlap_prefill") for c in r["cases"]] == [None, False] * 2
    assert "[overlap_prefill=off]" in proc.stdout
    for c in r["cases"]:
        # Four decode steps; with prefills in flight the first waited for the last prefill's tokens (prefill time).
        settled = c.get("overlap_prefill") is False
        assert c["decode"]["mbu"] > 0 and c["exchange_share"] > 0 and c["decode"]["steps"] == (4 if settled else 3)
        assert len(c["dp_ranks"]["work_s"]) == 2 and all(s > 0 for s in c["dp_ranks"]["work_s"])
    assert ", DP ranks: own work " in proc.stdout
    # the last case's prompts profiled (on the CPU no kernel rows, but steps and wall time)
    assert r["profile"]["prefill"]["steps"] >= 1 and r["profile"]["prefill"]["wall_s"] > 0
    assert "profile of decode bs3 @16, " in proc.stdout and " prefill steps: " in proc.stdout  # the case as configured


@pytest.mark.parametrize("settings,message", [
    ({"bench.repeats": 0}, r"bench\.repeats=0 must be at least 1"),
    ({"bench.hf_orders": ["given", "shuffled"]}, r"bench\.hf_orders=\['given', 'shuffled'\] must list one or more "
                                                r"of output_length, given"),
    ({"bench.hf_orders": []}, r"bench\.hf_orders=\[\] must list"),
    ({"bench.checkpoint_format": "int4"}, r"bench\.checkpoint_format='int4' must be model or fp8"),
    ({"bench.checkpoint_format": "fp8"}, r"set bench\.load=true"),
    ({"bench.profile_phase": "all"}, r"bench\.profile_phase='all' must be one of decode, prefill"),
    ({"bench.overlap_prefill_ab": True, "runtime.overlap_steps": False},
     r"bench\.overlap_prefill_ab=true .* needs runtime\.overlap_steps=true"),
])
def test_bench_refuses_bad_settings_before_starting_anything(settings, message):
    from omegaconf import OmegaConf

    from spmd_infer.bench.config import BenchConfig
    from spmd_infer.bench.run import run_bench
    from spmd_infer.parallel.dims import ConfigError

    cfg = OmegaConf.structured(BenchConfig)
    cfg.bench.preset = "tiny"
    for key, value in settings.items():
        OmegaConf.update(cfg, key, value)
    with pytest.raises(ConfigError, match=message):
        run_bench(cfg)


def test_console_names_the_tp_all_reduce_path():
    report = _report([_decode_case(100.0, 0.2, 0.5)])
    assert console_lines(report)[0].endswith("layout dp=1 tp=1")  # one rank a group: nothing to name
    report["layout"] = {"dp": 1, "tp": 2, "dp_attention": False, "all_reduce": "symmetric"}
    assert console_lines(report)[0].endswith("layout dp=1 tp=2 (symmetric all-reduce)")
    report["layout"] = {"dp": 2, "tp": 1, "dp_attention": True, "all_reduce": "none", "dp_exchange": "push"}
    assert console_lines(report)[0].endswith("layout dp=2 tp=1 dp_attention (push DP exchange)")
    report["engine"] = {"prefill_graph_tokens": 8192}  # engine/prefill_graphs.py's largest bucket
    assert console_lines(report)[0].endswith("(push DP exchange); prefill steps of up to 8192 tokens in CUDA graphs")


def test_console_flags_a_host_bound_prefill():
    """Where a case's prefill steps spent most of their time on the host before their forwards were launched, the
    console says so (its MFU then measures the host); a GPU-bound prefill gets no line."""
    case = _decode_case(100.0, 0.2, 0.5)
    case["prefill"].update(step_s=[0.017, 0.024, 0.003], launch_s=[0.016, 0.023, 0.002])
    assert "  decode bs1 @1024, prefill host-bound: 93% of its steps' time went by before their forwards were " \
           "launched" in console_lines(_report([case]))
    case["prefill"]["launch_s"] = [0.002, 0.003, 0.001]
    assert not any("host-bound" in line for line in console_lines(_report([case])))
    # A DP rank that waited in the exchange for another's prefill: the wait is before its launch but not its work.
    case["prefill"].update(step_s=[0.014, 0.003], launch_s=[0.013, 0.001], wait_s=[0.012, 0.0])
    assert not any("host-bound" in line for line in console_lines(_report([case])))
    case["prefill"].update(launch_s=[0.0135, 0.0025])
    assert "  decode bs1 @1024, prefill host-bound: 80% of its steps' time, waits for other DP ranks aside, went by " \
           "before their forwards were launched" in console_lines(_report([case]))


def test_prefill_steps_in_flight_are_host_bound_only_where_the_launch_took_the_whole_step():
    """With prefill steps in flight (runtime.overlap_prefill) a step launches its forward while the GPU runs the step
    before, then waits that one out: launches of 60% of the steps' time (Qwen1.5-MoE's eager 8192-token steps on an
    H200, 48 of 76 ms) under longer GPU work are GPU-bound; launches that fill the step are not."""
    case = _decode_case(100.0, 0.2, 0.5)
    case["prefill"].update(step_s=[0.0488, 0.0439, 0.0596, 0.0758, 0.0766],
                           launch_s=[0.0474, 0.0423, 0.0424, 0.0481, 0.0035])
    steps_in_flight = {**_report([case]), "engine": {"overlap_prefill": True}}
    assert not any("host-bound" in line for line in console_lines(steps_in_flight))
    assert any("prefill host-bound: 60%" in line for line in console_lines(_report([case])))  # synchronous steps
    case["prefill"].update(step_s=[0.017, 0.024, 0.003], launch_s=[0.016, 0.023, 0.002])
    assert any("prefill host-bound: 93%" in line for line in console_lines(steps_in_flight))
