"""The benchmark's optional profile (spmd_infer/bench/profile.py) without a launch: decode starts at the first step
with no prefill on any DP rank and counts steps from there; prefill runs from the start to that step; the lines say
how to read kernel times under PDL."""

from __future__ import annotations

import torch

from spmd_infer.bench.measure import StepRecord
from spmd_infer.bench.profile import StepProfiler, profile_case, profile_lines
from spmd_infer.parallel.dp_meta import Phase


def _step(phases: list[int]) -> StepRecord:
    return StepRecord(seconds=0.01, exchange_seconds=0.0, phase=Phase(phases[0]), dp_tokens=[1] * len(phases),
                      dp_phases=phases)


def test_profiling_starts_at_the_first_step_without_prefill_on_any_rank():
    profiler = StepProfiler(torch.device("cpu"))
    profiler.on_step(_step([Phase.PREFILL, Phase.DECODE]))  # another rank still prefills: not yet
    assert profiler.started is None
    for _ in range(3):
        profiler.on_step(_step([Phase.DECODE, Phase.DECODE]))
        torch.ones(64, 64) @ torch.ones(64, 64)
    prof = profiler.finish(top=5)
    assert prof["steps"] == 2 and prof["phase"] == "decode" and prof["pdl"] is False  # the first one starts it
    assert prof["wall_s"] > 0 and prof["top"] == []  # no CUDA kernels on the CPU
    assert any(row["name"] == "aten::mm" and row["calls_per_step"] == 1.5 for row in prof["host_top"])


def test_a_case_without_a_pure_decode_step_is_not_profiled():
    profiler = StepProfiler(torch.device("cpu"))
    profiler.on_step(_step([Phase.PREFILL]))
    assert profiler.finish(top=5) is None
    assert "nothing profiled" in profile_lines("decode bs1", None)[0]


def test_prefill_profiling_counts_the_steps_before_the_first_all_decode_step():
    def case(on_step):
        for phases in ([Phase.PREFILL], [Phase.PREFILL, Phase.DECODE], [Phase.DECODE, Phase.DECODE],
                       [Phase.PREFILL, Phase.PREFILL]):  # a later prompt's prefill: profiling has stopped
            on_step(_step(phases))

    prof = profile_case(case, torch.device("cpu"), top=5, phase="prefill")
    assert prof["phase"] == "prefill" and prof["steps"] == 2 and prof["wall_s"] > 0
    assert profile_case(lambda on_step: on_step(_step([Phase.DECODE])), torch.device("cpu"), 5, "prefill") is None
    assert profile_case(case, torch.device("cpu"), top=5, phase="decode")["steps"] == 1


def test_profile_lines_say_how_to_read_kernel_time_with_and_without_pdl():
    prof = {"phase": "decode", "steps": 10, "step_s": 0.0046, "kernel_s": 0.055, "kernel_share_of_wall": 1.18,
            "pdl": True,
            "top": [{"name": "_skinny_gemm_kernel", "calls_per_step": 64.0, "seconds_per_step": 0.001,
                     "share_of_kernels": 0.186}]}
    head, row = profile_lines("decode bs1 @1024", prof)
    assert "10 decode steps: 4.60 ms/step wall" in head and "5.50 ms/step" in head and "SPMD_PDL=0" in head
    assert "18.6%" in row and "1000.0 us/step" in row and "64.0x" in row and "_skinny_gemm_kernel" in row
    host = profile_lines("decode bs1 @1024", dict(prof, host_top=[{"name": "cudaStreamSynchronize",
                                                                   "calls_per_step": 1.0, "seconds_per_step": 2e-3}]))
    assert host[2].startswith("heaviest host calls") and "2000.0 us/step" in host[3] and "cudaStream" in host[3]
    head = profile_lines("decode bs1 @1024", dict(prof, pdl=False, kernel_share_of_wall=0.9))[0]
    assert "waiting on the host" in head and "SPMD_PDL" not in head
