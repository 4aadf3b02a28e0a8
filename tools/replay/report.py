"""Running a replay over several policies and presenting the totals."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from services.scaler.policy import Policy, units_for
from tools.replay.policies import make_step
from tools.replay.sim import Series, Totals, demand_series, simulate, zero_runs
from tools.replay.traces import Trace


def replay(
    trace: Trace,
    names: list[str],
    policy: Policy,
    *,
    service_s: float,
    price: float,
    start_s: int = 0,
    duration_s: int | None = None,
    skip_zero_runs_s: int = 600,
    record: bool = False,
) -> tuple[list[Totals], dict[str, Series]]:
    """Replay `trace` against each named policy; totals and (if `record`) series."""
    demand = demand_series(trace.arrivals, service_s, trace.busy)
    arrivals = list(trace.arrivals) + [0.0] * (len(demand) - len(trace.arrivals))
    end = len(demand) if duration_s is None else min(len(demand), start_s + duration_s)
    demand, arrivals = demand[start_s:end], arrivals[start_s:end]
    if not demand:
        raise ValueError(f"the window starts at {start_s} s, after the trace's end")
    skip = zero_runs(arrivals, skip_zero_runs_s)
    first = next((d for d, s in zip(demand, skip, strict=True) if not s), 0.0)
    initial = max(policy.min, units_for(first, policy))
    totals: list[Totals] = []
    series: dict[str, Series] = {}
    for name in names:
        step, tick = make_step(name, policy)
        t0 = time.perf_counter()
        tot, ser = simulate(
            name,
            demand,
            arrivals,
            step,
            tick_s=tick,
            lead_s=policy.lead_time_s,
            unit_capacity=policy.unit_capacity,
            initial_units=initial,
            price_usd_per_hour=price,
            skip=skip,
            start_t=start_s,
            record=record,
        )
        tot.wall_s = time.perf_counter() - t0
        totals.append(tot)
        if ser is not None:
            series[name] = ser
    return totals, series


def cheaper_baseline(totals: list[Totals]) -> Totals | None:
    """The baseline (hpa or kpa) with the fewest unit-hours, if any ran."""
    base = [t for t in totals if t.policy in ("hpa", "kpa")]
    return min(base, key=lambda t: t.unit_hours) if base else None


def _ratio(a: float, b: float) -> str:
    if b == 0:
        return "-" if a == 0 else "inf"
    return f"{a / b:.2f}x"


def print_table(totals: list[Totals], title: str, console: Console | None = None) -> None:
    """The human view: one row per policy, ratios against the cheaper baseline."""
    console = console or Console(width=None if sys.stdout.isatty() else 140)
    base = cheaper_baseline(totals)
    table = Table(title=title)
    for col in ("policy", "under unit-s", "under s", "unit-hours", "cost USD", "actions"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    if base is not None:
        table.add_column(f"under vs {base.policy}", justify="right")
        table.add_column(f"unit-h vs {base.policy}", justify="right")
    table.add_column("wall s", justify="right")
    for t in totals:
        row = [
            t.policy,
            f"{t.under_unit_s:,.1f}",
            f"{t.under_seconds:,}",
            f"{t.unit_hours:,.2f}",
            f"{t.cost_usd:,.2f}",
            f"{t.actions:,}",
        ]
        if base is not None:
            row.append(_ratio(t.under_unit_s, base.under_unit_s))
            row.append(_ratio(t.unit_hours, base.unit_hours))
        row.append(f"{t.wall_s:.1f}")
        table.add_row(*row)
    console.print(table)


def write_json(
    path: Path,
    totals: list[Totals],
    series: dict[str, Series],
    meta: dict[str, Any],
) -> None:
    """Write totals and per-second series {t, demand, desired, ready} per policy."""
    doc: dict[str, Any] = {"meta": meta, "policies": {}}
    for t in totals:
        s = series.get(t.policy)
        entry: dict[str, Any] = {"totals": asdict(t)}
        if s is not None:
            entry["series"] = {
                "t": s.t,
                "demand": s.demand,
                "desired": s.desired,
                "ready": s.ready,
            }
        doc["policies"][t.policy] = entry
    with path.open("w", encoding="utf-8") as f:
        json.dump(doc, f, separators=(",", ":"))
