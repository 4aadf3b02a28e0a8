"""`fleet report` in the terminal: one rich table per section, recommendations first."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.table import Table


def _table(title: str, head: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, title_justify="left", title_style="bold")
    for i, h in enumerate(head):
        t.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*(f"{c:,.2f}" if isinstance(c, float) else str(c) for c in row))
    return t


def _spark(values: list[float]) -> str:
    ticks = " ▁▂▃▄▅▆▇█"
    top = max(values, default=0.0) or 1.0
    return "".join(ticks[round(v / top * (len(ticks) - 1))] for v in values)


def _hours(x: float) -> str:
    """Unit-hours as a person reads them: whole above 100, else to the hundredth (a
    quarter of a unit-hour is not "0")."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}"


def show(report: dict[str, Any], console: Console) -> None:
    """Print every section of the report."""
    spend = report["spend"]
    since = time.strftime("%Y-%m-%d %H:%M", time.gmtime(report["since_ts"]))
    until = time.strftime("%Y-%m-%d %H:%M", time.gmtime(report["until_ts"]))
    idle_usd = sum(i["idle_usd"] for i in report["idle"])
    console.print(
        f"[bold]Fleet report[/bold], the last {report['days']:g} days ({since} to {until} UTC): "
        f"spend ${spend['total_usd']:,.2f}, {_hours(spend['unit_hours'])} unit-hours, "
        f"${idle_usd:,.2f} on idle units"
        + (
            f"; the cost-guard's ledger says ${spend['ledger_today_usd']:,.2f} today"
            if spend.get("ledger_today_usd") is not None
            else ""
        )
    )
    recs = report["recommendations"]
    t = Table(title="Recommendations", title_justify="left", title_style="bold", show_lines=True)
    t.add_column("saving/week", justify="right")
    t.add_column("change")
    t.add_column("why")
    for r in recs:
        saving = r["saving_usd_per_week"]
        t.add_row(f"${saving:,.2f}" if saving > 0 else "(performance)", r["title"], r["detail"])
    console.print(t if recs else "No change to recommend from this history.")
    hours = report["load_by_hour"]
    console.print(
        "\n[bold]Load by hour of day (UTC)[/bold] 00-23  "
        + _spark([h["demand"] for h in hours])
        + f"  peak hours: {', '.join(f'{h:02d}:00' for h in report['peak_hours']) or '-'}"
    )
    console.print(
        _table(
            "Load by day of week",
            ["day", "mean in flight", "peak", "units ready", "utilization"],
            [
                [d["slot"], d["demand"], d["peak_demand"], d["units_ready"], d["utilization"]]
                for d in report["load_by_weekday"]
            ],
        )
    )
    for key, name in (("by_gpu", "GPU type"), ("by_provider", "provider"), ("by_pool", "pool")):
        console.print(
            _table(f"Spend by {name}", [name, "USD"], [[k, v] for k, v in spend[key].items()])
        )
    console.print(
        _table(
            "Idle capacity (money burned)",
            ["pool", "unit-hours", "idle unit-hours", "idle USD", "utilization", "base", "peak"],
            [
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
            ],
        )
    )
    console.print(
        _table(
            "Jobs by GPU type and model",
            ["GPU", "model", "jobs", "ok", "dead", "mean s", "p95 s", "USD/job", "USD"],
            [
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
            ],
        )
    )
    b, f = report["budget"], report["failures"]
    console.print(
        f"\n[bold]Budget[/bold]: {b['denied']} denied (${b['denied_usd_per_hour']:,.2f}/h asked), "
        f"{b['held']} held"
        + "".join(f"; {p}: {c['denied']} denied, {c['held']} held" for p, c in b["by_pool"].items())
    )
    console.print(
        f"[bold]Failures[/bold]: {f['failed']} units failed, {f['replacements']} replacements"
        + "".join(f"; {p}: {n}" for p, n in f["by_provider"].items())
    )
    for note in report.get("notes", []):
        console.print(f"[yellow]note[/yellow]: {note}")
