"""End-of-job report pieces without a launch: the bounded timeline, metrics, summary, report.html, progress lines."""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import torch

from spmd_infer.parallel.dp_meta import NUM_FIELDS, DPMeta, Field, Phase
from spmd_infer.progress import Progress
from spmd_infer.report import Timeline, job_metrics, summary_lines, write_run_report
from spmd_infer.report.html import render_report


def _meta(tokens: list[int], phase=Phase.DECODE, free=90, finished=0, output=0) -> DPMeta:
    rows = torch.zeros(len(tokens), NUM_FIELDS, dtype=torch.int64)
    for r, t in enumerate(tokens):
        rows[r, Field.NUM_TOKENS] = t
        rows[r, Field.PHASE] = phase if t else Phase.IDLE
        rows[r, Field.FREE_BLOCKS] = free
        rows[r, Field.FINISHED] = finished if r == 0 else 0
        rows[r, Field.OUTPUT_TOKENS] = output
    return DPMeta(rows=rows, dp_rank=0)


def _job(steps: int, dp_attention: bool = False, max_points: int = 16) -> Timeline:
    """Rank 0 does all the work; rank 1 runs out of it halfway (an imbalanced job)."""
    tl = Timeline(dp=2, num_blocks=100, dp_attention=dp_attention, max_points=max_points)
    tl.record(_meta([40, 20], phase=Phase.PREFILL))
    for i in range(1, steps):
        tl.record(_meta([4, 2 if i < steps // 2 else 0], output=6 * i))
    tl.record(_meta([0, 0], finished=5, output=6 * steps), final=True)
    return tl


def _metrics(tl: Timeline) -> dict:
    summary = SimpleNamespace(requests=10, errors=1, prompt_tokens=60, output_tokens=6 * tl.steps, wall_seconds=2.0,
                              output="out.jsonl", preemptions=3)
    dims = SimpleNamespace(dp=2, tp=1, world_group=None)
    return job_metrics(summary, tl, dims, torch.device("cpu"), block_size=16)


def test_timeline_stays_bounded_and_keeps_exact_totals():
    tl = _job(steps=1000, max_points=16)
    points = tl.series()
    assert len(points) <= 16 and sum(p.steps for p in points) == 1000 == tl.steps
    assert tl.tokens == [40 + 4 * 999, 20 + 2 * 499]
    assert tl.idle == [0, 500] and tl.dummy == [0, 0]
    assert sum(p.idle[1] for p in points) == 500
    assert tl.peak_blocks_used == [10, 10] and tl.prefill_tokens == 60


def test_dummy_steps_counted_in_dp_attention_mode():
    tl = _job(steps=10, dp_attention=True)
    assert tl.idle[1] == tl.dummy[1] == 5


def test_metrics_summary_and_report(tmp_path):
    m = _metrics(_job(steps=300))
    r0, r1 = m["dp_ranks"]
    assert r0["requests_finished"] == 5 and r1["idle_steps"] == 150 and abs(r1["idle_share"] - 0.5) < 1e-9
    assert r0["padding_share"] == 0.0 and abs(r1["padding_share"] - (1 - (20 + 2 * 149) / (40 + 4 * 299))) < 1e-9
    assert r0["preemptions"] == 3 and m["load_imbalance"] > 1.3
    assert m["memory"]["kind"] == "cpu_max_rss" and m["memory"]["peak_bytes_per_rank"][0] > 0
    lines = "\n".join(summary_lines(m))
    for text in ("requests: 10 (1 with errors)", "generated tok/s", "DP load", "idle share", "KV cache", "peak memory"):
        assert text in lines

    report = write_run_report(tmp_path / "run", m)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == json.loads(json.dumps(m))
    page = report.read_text()
    # Self-contained: no scripts, no stylesheets or images fetched from elsewhere.
    assert "<script" not in page and "src=" not in page and "href=" not in page
    assert page.count("<svg") == 4
    for svg in page.split("<svg")[1:]:
        ET.fromstring("<svg" + svg.split("</svg>")[0] + "</svg>")  # each chart is well-formed XML
    assert "DP rank 1" in page and "150 idle" not in page  # heat-map tooltips are per cell, not totals


def test_report_with_no_steps():
    tl = Timeline(dp=1, num_blocks=10, dp_attention=False)
    tl.record(_meta([0]), final=True)
    page = render_report(_metrics_for(tl))
    assert "No steps ran" in page


def _metrics_for(tl: Timeline) -> dict:
    summary = SimpleNamespace(requests=1, errors=1, prompt_tokens=0, output_tokens=0, wall_seconds=1.0,
                              output="o.jsonl", preemptions=0)
    return job_metrics(summary, tl, SimpleNamespace(dp=1, tp=1, world_group=None), torch.device("cpu"), 16)


def test_plain_progress_lines_every_step_with_interval_zero(tmp_path, caplog):
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"prompt": "a"}\n\n{"prompt": "b"}\n{"prompt": "c"}\n')
    progress = Progress(enabled=True, interval_s=0, input_path=str(inp), terminal=False)
    with caplog.at_level(logging.INFO, logger="spmd_infer.progress"):
        progress.update(_meta([30, 0], phase=Phase.PREFILL), errors=1)
        progress.update(_meta([1, 0], finished=1, output=4), errors=1)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[0].startswith("progress: 1/3 requests done")
    assert "2/3" in lines[1] and "in " in lines[1] and "out " in lines[1] and "eta" in lines[1]


def test_progress_counts_rows_of_earlier_runs(tmp_path, caplog):
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"prompt": "a"}\n' * 10)
    progress = Progress(enabled=True, interval_s=0, input_path=str(inp), terminal=False, already_done=6)
    with caplog.at_level(logging.INFO, logger="spmd_infer.progress"):
        progress.update(_meta([3, 0], finished=2))
    assert caplog.records[-1].getMessage().startswith("progress: 8/10 requests done")


def test_progress_bar_on_a_terminal(tmp_path, capsys):
    progress = Progress(enabled=True, interval_s=0, terminal=True)
    progress.update(_meta([5, 5], finished=2, output=7))
    progress.close()
    err = capsys.readouterr().err
    assert "requests" in err and "2req" in err.replace(" ", "") and "out" in err
