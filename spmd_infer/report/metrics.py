"""The job's metrics (one dict, the same in metrics.json and the console summary), and writing them out."""

from __future__ import annotations

import json
import logging
import os
import resource
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist

from ..parallel.dp_meta import Field
from ..parallel.dp_exchange import dp_exchange_path
from ..parallel.symm_all_reduce import all_reduce_path
from .timeline import Timeline

log = logging.getLogger(__name__)


def job_metrics(summary: Any, timeline: Timeline, dims: Any, device: torch.device, block_size: int) -> dict:
    """Build the metrics on every rank; a collective (one small all-gather over the world group)."""
    per_rank = _gather_per_rank(dims, device, [_peak_memory_bytes(device), summary.preemptions])
    last = timeline.last
    finished = last.column(Field.FINISHED) if last is not None else [0] * dims.dp
    generated = last.column(Field.OUTPUT_TOKENS) if last is not None else [0] * dims.dp
    total_tokens = max(1, sum(timeline.tokens))
    mean_tokens = total_tokens / dims.dp
    ranks = []
    for r in range(dims.dp):
        ranks.append({
            "dp_rank": r,
            "requests_finished": finished[r],
            "tokens_run": timeline.tokens[r],
            "token_share": timeline.tokens[r] / total_tokens,
            "output_tokens": generated[r],
            "idle_steps": timeline.idle[r],
            "dummy_steps": timeline.dummy[r],
            "idle_share": timeline.idle[r] / max(1, timeline.working_steps),
            # Tokens this rank could have run had it been as busy as the busiest rank in each step:
            # the padding where shapes must agree across DP, idle capacity where they need not.
            "padding_share": 1 - timeline.tokens[r] / max(1, timeline.busiest_tokens),
            "kv_peak_blocks": timeline.peak_blocks_used[r],
            "kv_peak_share": timeline.peak_blocks_used[r] / max(1, timeline.num_blocks),
            "preemptions": per_rank[r * dims.tp][1],  # the TP leader's count; its TP peers have the same
        })
    wall = max(summary.wall_seconds, 1e-9)
    return {
        "requests": summary.requests,
        "errors": summary.errors,
        "resumed": getattr(summary, "resumed", 0),  # rows finished by earlier runs of the same job
        "prompt_tokens": summary.prompt_tokens,
        "output_tokens": summary.output_tokens,
        "wall_seconds": summary.wall_seconds,
        "loop_seconds": timeline.seconds,
        "prompt_tokens_per_s": summary.prompt_tokens / wall,
        "output_tokens_per_s": summary.output_tokens / wall,
        "prefill_tokens": timeline.prefill_tokens,  # prompt tokens computed, recomputation after preemption included
        "steps": timeline.steps,
        "working_steps": timeline.working_steps,
        "layout": {"dp": dims.dp, "tp": dims.tp, "world": dims.dp * dims.tp, "dp_attention": timeline.dp_attention,
                   "all_reduce": all_reduce_path(getattr(dims, "tp_group", None), dims.tp),
                   "dp_exchange": dp_exchange_path(getattr(dims, "dp_group", None),
                                                   bool(timeline.dp_attention) and dims.dp > 1)},
        "load_imbalance": max(timeline.tokens) / mean_tokens if sum(timeline.tokens) else 1.0,
        "dp_ranks": ranks,
        "kv_cache": {"blocks_per_rank": timeline.num_blocks, "block_size": block_size,
                     "tokens_per_dp_group": timeline.num_blocks * block_size,
                     "peak_share": max(r["kv_peak_share"] for r in ranks)},
        "memory": {"kind": "cuda_max_reserved" if device.type == "cuda" else "cpu_max_rss",
                   "peak_bytes_per_rank": [m for m, _ in per_rank]},
        "output": summary.output,
        "timeline": {
            "steps_per_point": timeline.steps_per_point,
            "points": [{"steps": b.steps, "t_end": round(b.t_end, 4), "tokens": b.tokens, "idle": b.idle,
                        "dummy": b.dummy, "prefill_tokens": b.prefill_tokens, "output_tokens": b.output_tokens}
                       for b in timeline.series()],
        },
    }


def _peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_reserved(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _gather_per_rank(dims: Any, device: torch.device, values: list[int]) -> list[list[int]]:
    """[[values of global rank 0], [rank 1], ...]: one all-gather at the end of the job."""
    mine = torch.tensor(values, dtype=torch.int64, device=device)
    group = dims.world_group
    world = dist.get_world_size(group) if dist.is_initialized() else 1
    if world == 1:
        return [values] * (dims.dp * dims.tp)  # one process, or a test standing in for a whole layout
    out = torch.empty(world * len(values), dtype=torch.int64, device=device)
    dist.all_gather_into_tensor(out, mine, group=group)
    return out.view(world, len(values)).tolist()


def summary_lines(m: dict) -> list[str]:
    """The console summary: the headline numbers of metrics.json."""
    ranks = m["dp_ranks"]

    def per_rank(key: str, fmt: str) -> str:
        return " / ".join(fmt.format(r[key]) for r in ranks)

    lines = [
        f"requests: {m['requests']} ({m['errors']} with errors"
        + (f"; {m['resumed']} done by earlier runs)" if m.get("resumed") else ")"),
        f"tokens: {m['prompt_tokens']} prompt, {m['output_tokens']} generated in {m['steps']} steps",
        f"time: {m['wall_seconds']:.2f} s, {m['prompt_tokens_per_s']:.1f} prompt tok/s, "
        f"{m['output_tokens_per_s']:.1f} generated tok/s",
    ]
    if len(ranks) > 1:
        lines += [
            f"DP load (tokens run per DP rank): {per_rank('tokens_run', '{}')} (max/mean {m['load_imbalance']:.2f})",
            f"DP idle share of working steps: {per_rank('idle_share', '{:.0%}')}; "
            f"padding share: {per_rank('padding_share', '{:.0%}')}",
        ]
    kv = m["kv_cache"]
    lines.append(f"KV cache: peak use {per_rank('kv_peak_share', '{:.0%}')} of {kv['blocks_per_rank']} blocks "
                 f"x {kv['block_size']} tokens per DP group")
    mem = m["memory"]["peak_bytes_per_rank"]
    kind = "GPU (reserved)" if m["memory"]["kind"].startswith("cuda") else "host RSS"
    lines.append(f"peak memory, {kind}: {max(mem) / 2**30:.2f} GiB max over {len(mem)} ranks")
    lines.append(f"output: {m['output']}")
    return lines


def write_run_report(run_dir: Optional[Path], metrics: dict) -> Optional[Path]:
    """metrics.json and report.html in the run directory (global rank 0 only); returns the report's path."""
    from .html import render_report

    if run_dir is None:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(run_dir / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    report = run_dir / "report.html"
    _atomic_write(report, render_report(metrics))
    log.info("metrics: %s; report: %s", run_dir / "metrics.json", report)
    return report


def _atomic_write(path: Path, text: str) -> None:
    # A requeued job may be killed mid-write; readers then still see the previous complete file.
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
