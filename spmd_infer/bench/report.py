"""The benchmark's console table and JSON file (bench/README.md says what each field means)."""

from __future__ import annotations

import json
from pathlib import Path

COLUMNS = [  # (header, width, value from a case's dict)
    ("case", 34, lambda c: c["name"]),
    ("out tok/s", 10, lambda c: f"{c['output_tok_s']:.0f}"),
    ("tot tok/s", 10, lambda c: f"{c['total_tok_s']:.0f}"),
    ("TTFT med", 9, lambda c: _ms(c["ttft_s"].get("median"))),
    ("step med", 9, lambda c: _ms(c.get("decode", {}).get("median_step_s"))),
    ("MBU", 6, lambda c: _pct(c.get("decode", {}).get("mbu"))),
    # The decode rate itself: the copy-rate ceiling is measured anew each run and moves a few percent between runs.
    ("dec TB/s", 8, lambda c: _tb(c.get("decode", {}).get("bytes_per_s"))),
    ("MFU", 6, lambda c: _pct(c.get("prefill", {}).get("mfu"))),
    ("exch", 6, lambda c: _pct(c.get("exchange_collective_share", c["exchange_share"]))),
    ("wait", 6, lambda c: _pct(c.get("dp_wait_share"))),
    ("HF tok/s", 9, lambda c: f"{c['hf']['output_tok_s']:.0f}" if "hf" in c else "-"),
    ("x HF", 6, lambda c: f"{c['vs_hf']['output_tok_s']:.2f}" if "vs_hf" in c else "-"),
    ("x HF step", 9, lambda c: f"{c['vs_hf']['decode_step']:.2f}" if "decode_step" in c.get("vs_hf", {}) else "-"),
]


# A prefill whose steps spend at least this share of their time on the host before the forward's launch is flagged:
# with synchronous steps (runtime.overlap_prefill=false) the GPU runs only what the host has launched so far.
HOST_BOUND_SHARE = 0.5
# With prefill steps in flight, a step's launch overlaps the GPU's work on the step before, which the step then waits
# out: the GPU waited on the host only where the launch took (nearly) the whole step. (Qwen1.5-MoE's eager 8192-token
# steps on an H200 spent 48 of each 76 ms launching, under 76 ms of GPU work, and were flagged at 0.5.)
HOST_BOUND_SHARE_IN_FLIGHT = 0.9


def _prefill_graphs(tokens: int) -> str:
    return f"; prefill steps of up to {tokens} tokens in CUDA graphs" if tokens else ""


def console_lines(report: dict) -> list[str]:
    m, lay, ceil, st = report["model"], report["layout"], report["ceilings"], report["startup"]
    float8 = [what for what, on in (("float8 linear layers", m.get("fp8_linears")),
                                    ("float8 experts", m.get("fp8_experts")),
                                    ("float8 KV cache", report.get("kv_cache", {}).get("dtype") == "fp8")) if on]
    lines = [
        f"model {m['name']} ({m['architecture']}, {', '.join([m['dtype'], *float8])}, "
        f"{m['cost']['weight_bytes_per_rank'] / 2**30:.2f} GiB of weights per rank, "
        f"{m['cost']['kv_bytes_per_token']} KV bytes per token per rank); "
        f"layout dp={lay['dp']} tp={lay['tp']}{' dp_attention' if lay['dp_attention'] else ''}"
        f"{' (' + lay['all_reduce'] + ' all-reduce)' if lay.get('all_reduce', 'none') != 'none' else ''}"
        f"{' (' + lay['dp_exchange'] + ' DP exchange)' if lay.get('dp_exchange', 'none') != 'none' else ''}"
        f"{_prefill_graphs(report.get('engine', {}).get('prefill_graph_tokens', 0))}",
        f"device {ceil['device']}: copy {ceil['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s (read + write), "
        f"{ceil['dtype']} matmul {ceil['matmul_flops_per_s'] / 1e12:.3g} TFLOP/s (n={ceil['matmul_n']})",
        "startup " + ", ".join(f"{k.removesuffix('_s')} {v:.2f} s" for k, v in st.items() if v is not None),
        "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w, _) in enumerate(COLUMNS)),
    ]
    for case in report["cases"]:
        lines.append("  ".join(fn(case).rjust(w) if i else fn(case)[:w].ljust(w)
                               for i, (_, w, fn) in enumerate(COLUMNS)))
    for case in report["cases"]:
        if case.get("runs"):  # bench.repeats > 1: the row above is the median run
            runs = case["runs"]
            rates = " / ".join(f"{r['output_tok_s']:.0f}" for r in runs)
            steps = " / ".join(_ms(r["decode_median_step_s"]) for r in runs)
            mbus = " / ".join(_pct(r["decode_mbu"]) for r in runs)
            lines.append(f"  {case['name']}, {len(runs)} runs: out tok/s {rates}; decode step {steps}; MBU {mbus}")
    in_flight = (report.get("engine") or {}).get("overlap_prefill", False)
    host_bound_share = HOST_BOUND_SHARE_IN_FLIGHT if in_flight else HOST_BOUND_SHARE
    for case in report["cases"]:
        prefill = case.get("prefill") or {}
        # Waits for slower DP ranks (in the exchange, before the launch) are neither this host's work nor its GPU's.
        wait = sum(prefill.get("wait_s") or [])
        launch, steps = sum(prefill.get("launch_s") or []) - wait, sum(prefill.get("step_s") or []) - wait
        if steps > 0 and launch >= host_bound_share * steps:  # the GPU waited on the host: its MFU says little
            aside = ", waits for other DP ranks aside," if wait > 0 else ""
            lines.append(f"  {case['name']}, prefill host-bound: {launch / steps:.0%} of its steps' time{aside} went "
                         f"by before their forwards were launched")
    for case in report["cases"]:
        full = [r.get("gc_full") or {} for r in case.get("runs") or [case]]
        if any(f.get("collections") for f in full):  # host time in which no step was launched
            each = " / ".join(f"{f.get('collections', 0)} in {f.get('seconds', 0.0):.2f} s" for f in full)
            lines.append(f"  {case['name']}, full garbage collections: {each}")
    for case in report["cases"]:
        counts = [r.get("allocator") or {} for r in case.get("runs") or [case]]
        if any(c.get("retries") or c.get("device_allocs") for c in counts):  # synchronising allocator work in a run
            each = " / ".join(f"{c.get('retries', 0)} retries, {c.get('device_allocs', 0)} cudaMalloc, "
                              f"{c.get('device_frees', 0)} cudaFree" for c in counts)
            lines.append(f"  {case['name']}, allocator: {each}")
    for case in report["cases"]:
        ranks = case.get("dp_ranks")
        if ranks:  # dp > 1: what the `wait` column waits on
            work = " / ".join(f"{s:.2f}" for s in ranks["work_s"])
            idle = " / ".join(str(n) for n in ranks["idle_steps"])
            lines.append(f"  {case['name']}, DP ranks: own work {work} s; steps with nothing to run {idle}")
    for case in report["cases"]:
        by_order = case.get("hf_by_order", {})
        if len(by_order) > 1:  # bench.hf_orders lists more than one: each beside the headline
            each = "; ".join(f"{order} order {r['output_tok_s']:.0f} tok/s "
                             f"(engine {r['vs_engine']['output_tok_s']:.1f}x)" for order, r in by_order.items())
            lines.append(f"  {case['name']}, transformers by prompt order: {each}")
    sheet = ceil.get("sheet_bandwidth_bytes_per_s")
    if sheet and ceil["bandwidth_bytes_per_s"] > sheet:
        lines.append(f"warning: the measured copy rate is above the card's data-sheet {sheet / 1e9:.0f} GB/s, so this "
                     f"run's MBU is understated; compare `dec TB/s`, or rerun")
    if report.get("baseline_skipped"):
        lines.append(f"hf baseline skipped: {report['baseline_skipped']}")
    return lines


def write_json(report: dict, path: str) -> Path:
    out = Path(path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return out


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f}ms"


def _tb(bytes_per_s) -> str:
    return "-" if bytes_per_s is None else f"{bytes_per_s / 1e12:.2f}"


def _pct(share) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"
