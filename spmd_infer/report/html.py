"""report.html: one self-contained page (inline SVG, no scripts or external files) showing DP load at a glance."""

from __future__ import annotations

import html
import math

W, H = 860, 260  # chart size in px
PAD_L, PAD_R, PAD_T, PAD_B = 64, 150, 28, 40
HEATMAP_COLUMNS = 200  # heat-map cells per DP rank; more would only blur into each other on screen
THROUGHPUT_POINTS = 100  # a rate over a few steps is mostly noise; average over wider windows
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]


def render_report(m: dict) -> str:
    points = m["timeline"]["points"]
    dp = m["layout"]["dp"]
    body = [f"<h1>spmd-infer job report</h1><p>{_esc(m['output'])}</p>", _summary_table(m), _rank_table(m)]
    if points:
        body += [_cumulative_chart(points, dp), _tokens_chart(points, dp, m["timeline"]["steps_per_point"]),
                 _idle_heatmap(points, dp), _throughput_chart(points)]
    else:
        body.append("<p>No steps ran (every row was an error or already done).</p>")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>spmd-infer report</title><style>"
            "body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;"
            "margin:12px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
            "td:first-child{text-align:left}h2{margin-top:28px;font-size:1.1em}svg{display:block}"
            ".note{color:#666;font-size:.9em}</style></head><body>" + "\n".join(body) + "</body></html>\n")


def _esc(x) -> str:
    return html.escape(str(x), quote=True)


def _summary_table(m: dict) -> str:
    lay = m["layout"]
    mem = m["memory"]["peak_bytes_per_rank"]
    rows = [
        ("layout", f"dp={lay['dp']} x tp={lay['tp']} ({lay['world']} ranks)"
                   + (", DP attention" if lay["dp_attention"] else "")
                   + (f", {lay['all_reduce']} all-reduce" if lay.get("all_reduce", "none") != "none" else "")),
        ("requests", f"{m['requests']} ({m['errors']} errors)"),
        ("tokens", f"{m['prompt_tokens']} prompt, {m['output_tokens']} generated"),
        ("wall time", f"{m['wall_seconds']:.2f} s (step loop {m['loop_seconds']:.2f} s, {m['steps']} steps)"),
        ("throughput", f"{m['prompt_tokens_per_s']:.1f} prompt tok/s, {m['output_tokens_per_s']:.1f} generated tok/s"),
        ("load imbalance", f"{m['load_imbalance']:.2f} (max/mean tokens per DP rank; 1.00 is even)"),
        ("KV cache", f"{m['kv_cache']['blocks_per_rank']} blocks x {m['kv_cache']['block_size']} tokens per DP "
                     f"group, peak use {m['kv_cache']['peak_share']:.0%}"),
        ("peak memory", f"{max(mem) / 2**30:.2f} GiB max over ranks ({m['memory']['kind']})"),
    ]
    return "<table>" + "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in rows) + "</table>"


def _rank_table(m: dict) -> str:
    head = ("<tr><th>DP rank</th><th>requests</th><th>tokens run</th><th>share</th><th>generated</th>"
            "<th>idle steps</th><th>dummy steps</th><th>idle share</th><th>padding share</th>"
            "<th>KV peak</th><th>preemptions</th></tr>")
    rows = "".join(
        f"<tr><td><span style='color:{_color(r['dp_rank'])}'>&#9632;</span> {r['dp_rank']}</td>"
        f"<td>{r['requests_finished']}</td><td>{r['tokens_run']}</td><td>{r['token_share']:.1%}</td>"
        f"<td>{r['output_tokens']}</td><td>{r['idle_steps']}</td><td>{r['dummy_steps']}</td>"
        f"<td>{r['idle_share']:.1%}</td><td>{r['padding_share']:.1%}</td><td>{r['kv_peak_share']:.0%}</td>"
        f"<td>{r['preemptions']}</td></tr>" for r in m["dp_ranks"])
    note = ("<p class='note'>idle share: steps in which this DP rank had no tokens while another had some. "
            "padding share: tokens it could have run had it been as busy as the busiest DP rank in each step.</p>")
    return "<h2>Per DP rank</h2><table>" + head + rows + "</table>" + note


def _color(i: int) -> str:
    return PALETTE[i] if i < len(PALETTE) else f"hsl({(i * 137.5) % 360:.0f},60%,45%)"


def _cumulative_chart(points: list[dict], dp: int) -> str:
    xs, totals, step = [0.0], [[0] for _ in range(dp)], 0
    for p in points:
        step += p["steps"]
        xs.append(step)
        for r in range(dp):
            totals[r].append(totals[r][-1] + p["tokens"][r])
    series = [(f"DP rank {r}", totals[r], _color(r)) for r in range(dp)]
    return ("<h2>Tokens run so far, per DP rank</h2><p class='note'>Lines that fan out mean uneven load; "
            "a flat stretch is a rank without work.</p>" + _line_chart(xs, series, "step", "tokens"))


def _tokens_chart(points: list[dict], dp: int, per_point: int) -> str:
    xs, step = [], 0
    for p in points:
        xs.append(step + p["steps"] / 2)
        step += p["steps"]
    series = [(f"DP rank {r}", [p["tokens"][r] / p["steps"] for p in points], _color(r)) for r in range(dp)]
    title = "Tokens per step, per DP rank" + (f" (mean over {per_point} steps a point)" if per_point > 1 else "")
    return "<h2>" + _esc(title) + "</h2>" + _line_chart(xs, series, "step", "tokens / step")


def _throughput_chart(points: list[dict]) -> str:
    xs, prompt, out = [], [], []
    t0, o0 = 0.0, 0
    group = max(1, math.ceil(len(points) / THROUGHPUT_POINTS))
    for i in range(0, len(points), group):
        window = points[i:i + group]
        t1 = window[-1]["t_end"]
        dt = max(t1 - t0, 1e-6)
        xs.append((t0 + t1) / 2)
        prompt.append(sum(p["prefill_tokens"] for p in window) / dt)
        out.append((window[-1]["output_tokens"] - o0) / dt)
        t0, o0 = t1, window[-1]["output_tokens"]
    series = [("prompt (prefill)", prompt, PALETTE[0]), ("generated", out, PALETTE[1])]
    return "<h2>Throughput over time, all DP ranks</h2>" + _line_chart(xs, series, "seconds", "tokens / s")


def _idle_heatmap(points: list[dict], dp: int) -> str:
    group = max(1, math.ceil(len(points) / HEATMAP_COLUMNS))
    cols = [points[i:i + group] for i in range(0, len(points), group)]
    cell_w = (W - PAD_L - PAD_R) / len(cols)
    cell_h = max(6, min(24, 180 // dp))
    height = PAD_T + cell_h * dp + PAD_B
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{height}' font-size='11'>"]
    step = 0
    for c, col in enumerate(cols):
        steps = sum(p["steps"] for p in col)
        for r in range(dp):
            idle = sum(p["idle"][r] for p in col)
            dummy = sum(p["dummy"][r] for p in col)
            share = idle / steps
            # Busy is light grey; idle shades to red (to purple where the idle steps ran dummy forwards).
            rgb = (200, 60, 200) if dummy * 2 > idle and idle else (220, 40, 40)
            fill = tuple(round(235 + (v - 235) * share) for v in rgb)
            parts.append(f"<rect x='{PAD_L + c * cell_w:.2f}' y='{PAD_T + r * cell_h}' width='{cell_w + 0.3:.2f}' "
                         f"height='{cell_h - 1}' fill='rgb{fill}'><title>DP rank {r}, steps {step}-{step + steps - 1}: "
                         f"{idle} idle ({dummy} dummy) of {steps}</title></rect>")
        step += steps
    for r in range(dp):
        parts.append(f"<text x='{PAD_L - 6}' y='{PAD_T + r * cell_h + cell_h * 0.7:.1f}' text-anchor='end'>"
                     f"rank {r}</text>")
    parts.append(f"<text x='{PAD_L}' y='{height - 12}'>step 0</text><text x='{W - PAD_R}' y='{height - 12}' "
                 f"text-anchor='end'>step {step}</text>")
    parts.append(f"<text x='{W - PAD_R + 10}' y='{PAD_T + 10}'>red: idle</text>"
                 f"<text x='{W - PAD_R + 10}' y='{PAD_T + 26}'>purple: dummy</text>"
                 f"<text x='{W - PAD_R + 10}' y='{PAD_T + 42}'>grey: busy</text></svg>")
    return ("<h2>Idle and dummy steps per DP rank</h2><p class='note'>Each cell is a span of steps; the redder, "
            "the larger the share of them in which the rank waited for others.</p>" + "".join(parts))


def _line_chart(xs: list[float], series: list[tuple[str, list[float], str]], xlabel: str, ylabel: str) -> str:
    x_step = _nice(max(xs[-1], 1e-9) / 5)
    x_max = x_step * math.ceil(max(xs[-1], 1e-9) / x_step)
    y_step = _nice(max([max(ys) for _, ys, _ in series] + [1e-9]) / 4)
    y_top = y_step * max(1, math.ceil(max([max(ys) for _, ys, _ in series] + [1e-9]) / y_step))
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def px(x: float) -> float:
        return PAD_L + pw * x / x_max

    def py(y: float) -> float:
        return PAD_T + ph * (1 - y / y_top)

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' font-size='11'>",
             f"<rect x='{PAD_L}' y='{PAD_T}' width='{pw}' height='{ph}' fill='none' stroke='#999'/>"]
    for i in range(round(y_top / y_step) + 1):
        y = y_step * i
        parts.append(f"<line x1='{PAD_L}' x2='{PAD_L + pw}' y1='{py(y):.1f}' y2='{py(y):.1f}' stroke='#eee'/>"
                     f"<text x='{PAD_L - 6}' y='{py(y) + 4:.1f}' text-anchor='end'>{_fmt(y)}</text>")
    for i in range(round(x_max / x_step) + 1):
        x = x_step * i
        parts.append(f"<text x='{px(x):.1f}' y='{PAD_T + ph + 16}' text-anchor='middle'>{_fmt(x)}</text>")
    parts.append(f"<text x='{PAD_L + pw / 2}' y='{H - 6}' text-anchor='middle'>{_esc(xlabel)}</text>"
                 f"<text x='14' y='{PAD_T + ph / 2}' transform='rotate(-90 14 {PAD_T + ph / 2})' "
                 f"text-anchor='middle'>{_esc(ylabel)}</text>")
    for i, (label, ys, color) in enumerate(series):
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys))
        parts.append(f"<polyline fill='none' stroke='{color}' stroke-width='1.5' points='{coords}'>"
                     f"<title>{_esc(label)}</title></polyline>")
        if len(xs) == 1:
            parts.append(f"<circle cx='{px(xs[0]):.1f}' cy='{py(ys[0]):.1f}' r='3' fill='{color}'/>")
        if i < 16:  # a legend of more entries would not fit; the colors match the table above
            ly = PAD_T + 8 + 15 * i
            parts.append(f"<rect x='{W - PAD_R + 10}' y='{ly - 8}' width='10' height='10' fill='{color}'/>"
                         f"<text x='{W - PAD_R + 24}' y='{ly + 1}'>{_esc(label)}</text>")
    return "".join(parts) + "</svg>"


def _nice(v: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is >= v: a round tick step."""
    base = 10 ** math.floor(math.log10(v))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= v)


def _fmt(v: float) -> str:
    return f"{v:.0f}" if v >= 10 or v == 0 else f"{v:.2g}"
