"""`fleet report --html FILE`: the report as one self-contained HTML file.

Charts are inline SVG and the styles inline CSS: no script, no font, no image
to fetch, so the file opens anywhere (a mail attachment, an air-gapped laptop)
and a browser has nothing to complain about in its console.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from html import escape
from typing import Any

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;
max-width:1100px;color:#1d2430;background:#fff;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid
#dde3ea;padding-bottom:4px}.sub{color:#5b6675;margin:0 0 16px}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #dde3ea;border-radius:8px;
padding:10px 14px;min-width:150px}.card b{display:block;font-size:20px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:16px}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:4px 8px;
border-bottom:1px solid #eef1f5}th{color:#5b6675;font-weight:600}td.n{text-align:right;
font-variant-numeric:tabular-nums}.rec{border-left:4px solid #2f7d4f;padding:6px 12px;
margin:10px 0;background:#f6faf7}.rec.perf{border-color:#b7791f;background:#fdf8ef}
.rec h3{margin:0 0 4px;font-size:15px}.rec .save{float:right;font-weight:600}
.muted{color:#5b6675;font-size:12px}svg text{font:11px system-ui,sans-serif;fill:#5b6675}
"""


def money(x: float) -> str:
    return f"${x:,.2f}"


def bars(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    unit: str = "",
    width: int = 520,
    height: int = 180,
    color: str = "#3b6fb6",
) -> str:
    """A vertical bar chart as inline SVG."""
    top = max(values, default=0.0) or 1.0
    n = max(len(values), 1)
    left, bottom = 44, 22
    plot_w, plot_h = width - left - 6, height - bottom - 10
    step = plot_w / n
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">'
    ]
    for frac in (0.0, 0.5, 1.0):
        y = 10 + plot_h * (1 - frac)
        parts.append(
            f'<line x1="{left}" x2="{width - 6}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eef1f5"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{top * frac:,.3g}{unit}</text>'
        )
    every = max(1, n // 12)
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        h = plot_h * v / top
        x = left + i * step
        parts.append(
            f'<rect x="{x + step * 0.12:.1f}" y="{10 + plot_h - h:.1f}" width="{step * 0.76:.1f}" '
            f'height="{h:.1f}" fill="{color}"><title>{escape(label)}: {v:,.2f}{unit}</title></rect>'
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{height - 6}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def hbars(items: dict[str, float], *, width: int = 520, color: str = "#2f7d4f") -> str:
    """Horizontal bars for a breakdown (spend by GPU, provider, pool), largest first."""
    rows = sorted(items.items(), key=lambda kv: -kv[1])[:10]
    if not rows:
        return '<p class="muted">nothing in the period</p>'
    top = rows[0][1] or 1.0
    row_h, label_w = 22, 120
    height = row_h * len(rows) + 4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">'
    ]
    for i, (label, v) in enumerate(rows):
        y = i * row_h + 2
        w = (width - label_w - 90) * v / top
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" '
            f'fill="{color}"/><text x="{label_w + w + 6:.1f}" y="{y + 15}">{money(v)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table; numbers right-aligned."""
    if not rows:
        return '<p class="muted">nothing in the period</p>'
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = []
    for row in rows:
        cells = []
        for c in row:
            cls = ' class="n"' if isinstance(c, int | float) else ""
            text = f"{c:,.2f}" if isinstance(c, float) else str(c)
            cells.append(f"<td{cls}>{escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{th}</tr>{''.join(body)}</table>"


def _recs(recs: Sequence[dict[str, Any]]) -> str:
    if not recs:
        return '<p class="muted">no change to recommend from this history</p>'
    out = []
    for r in recs:
        saving = r["saving_usd_per_week"]
        label = f"saves {money(saving)}/week" if saving > 0 else "buys performance"
        nums = ", ".join(f"{k} {v:,.4g}" for k, v in r["numbers"].items())
        cls = "rec" if saving > 0 else "rec perf"
        out.append(
            f'<div class="{cls}"><span class="save">{label}</span><h3>{escape(r["title"])}</h3>'
            f'<div>{escape(r["detail"])}</div><div class="muted">{escape(nums)} '
            f"&middot; {escape(r.get('source', 'report'))}</div></div>"
        )
    return "".join(out)


def render(report: dict[str, Any]) -> str:
    """The whole page."""
    spend = report["spend"]
    idle_usd = sum(i["idle_usd"] for i in report["idle"])
    since = time.strftime("%Y-%m-%d %H:%M", time.gmtime(report["since_ts"]))
    until = time.strftime("%Y-%m-%d %H:%M", time.gmtime(report["until_ts"]))
    hours = report["load_by_hour"]
    days = report["load_by_weekday"]
    cards = [
        ("spend", money(spend["total_usd"])),
        ("unit-hours", f"{spend['unit_hours']:,.0f}"),
        ("idle (money burned)", money(idle_usd)),
        ("denied / held", f"{report['budget']['denied']} / {report['budget']['held']}"),
        ("failed units", str(report["failures"]["failed"])),
        (
            "savings found",
            money(sum(r["saving_usd_per_week"] for r in report["recommendations"])) + "/wk",
        ),
    ]
    jobs = [
        [
            g["gpu_model"],
            g["model"],
            g["jobs"],
            g["succeeded"],
            g["dead"],
            g["mean_s"],
            g["p95_s"],
            g["mean_cost_usd"],
            g["total_cost_usd"],
        ]
        for g in report["jobs"]
    ]
    idle = [
        [
            i["pool"],
            i["unit_hours"],
            i["idle_unit_hours"],
            i["idle_usd"],
            i["utilization"],
            i["base_units"],
            i["peak_units"],
        ]
        for i in report["idle"]
    ]
    budget_rows = [[p, c["denied"], c["held"]] for p, c in report["budget"]["by_pool"].items()]
    fail_rows = [[k, v] for k, v in report["failures"]["by_provider"].items()]
    notes = "".join(f"<li>{escape(n)}</li>" for n in report.get("notes", []))
    title = f"fleetplane report, {report['days']:g} days"
    pools = escape(", ".join(report["pools"]) or "none")
    card_html = "".join(f'<div class="card">{escape(k)}<b>{escape(v)}</b></div>' for k, v in cards)
    by_day = bars([d[5:] for d in spend["by_day"]], list(spend["by_day"].values()), color="#2f7d4f")
    idle_table = table(
        ["pool", "unit-hours", "idle unit-hours", "idle $", "utilization", "base", "peak"], idle
    )
    jobs_table = table(
        ["GPU", "model", "jobs", "succeeded", "dead", "mean s", "p95 s", "$ per job", "$ total"],
        jobs,
    )
    fails = report["failures"]
    fail_text = f"{fails['failed']} units failed, {fails['replacements']} replacements asked for."
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body>
<h1>Fleet report: the last {report["days"]:g} days</h1>
<p class="sub">{since} to {until} UTC &middot; pools: {pools}</p>
<div class="cards">{card_html}</div>
<h2>Recommendations</h2>{_recs(report["recommendations"])}
<h2>Load</h2>
<div class="grid"><div><p class="muted">mean requests in flight by hour of day (UTC)</p>
{bars([h["slot"] for h in hours], [h["demand"] for h in hours])}</div>
<div><p class="muted">mean requests in flight by day of week</p>
{bars([d["slot"] for d in days], [d["demand"] for d in days], color="#6b5bb6")}</div></div>
<h2>Spend</h2>
<div class="grid"><div><p class="muted">by GPU type</p>{hbars(spend["by_gpu"])}</div>
<div><p class="muted">by provider</p>{hbars(spend["by_provider"])}</div>
<div><p class="muted">by pool</p>{hbars(spend["by_pool"])}</div>
<div><p class="muted">by day (UTC)</p>{by_day}</div></div>
<h2>Idle capacity (money burned)</h2>{idle_table}
<h2>Jobs by GPU type and model</h2>{jobs_table}
<div class="grid"><div><h2>Budget denials and holds</h2>
{table(["pool", "denied", "held"], budget_rows)}</div>
<div><h2>Failures and replacements</h2><p>{fail_text}</p>
{table(["provider", "failed units"], fail_rows)}</div></div>
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
<p class="muted">fleetplane &middot; fleet report --days {report["days"]:g} --html</p>
</body></html>
"""
