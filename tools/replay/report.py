"""Running a replay over several policies and presenting the totals."""

from __future__ import annotations

import json
import math
from array import array
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from services.scaler.policy import Policy
from tools.replay.frontier import (
    UNDER_RATIO_GOAL,
    Headline,
    Point,
    Reading,
    better_baseline,
    frontier,
)
from tools.replay.policies import KNOB
from tools.replay.sim import Series, Totals
from tools.replay.sweep import plan, run_jobs
from tools.replay.traces import Trace
from tools.replay.workload import prepare
from tools.termout import stdout_console


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
    """Replay `trace` against each named policy at its default setting, in this
    process; totals and (if `record`) series."""
    work = prepare(
        trace,
        service_s=service_s,
        start_s=start_s,
        duration_s=duration_s,
        skip_zero_runs_s=skip_zero_runs_s,
    )
    out = run_jobs(work, plan(names, policy, sweep=False, record=record), price=price)
    totals = [out.defaults[n].totals for n in names]
    series = {n: s for n in names if (s := out.defaults[n].series) is not None}
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
    console = console or stdout_console()
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
    print_whole(console, table)


def print_frontiers(points: dict[str, list[Point]], console: Console | None = None) -> None:
    """Each policy's frontier: one row per knob setting, by unit-hours."""
    console = console or stdout_console()
    table = Table(title=f"frontiers (knob: {KNOB})")
    for col in ("policy", "knob", "unit-hours", "under unit-s", "actions"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for name, pts in points.items():
        for p in frontier(pts):
            table.add_row(
                name,
                f"{p.knob:g}",
                f"{p.unit_hours:,.2f}",
                f"{p.under_unit_s:,.1f}",
                f"{p.actions:,}",
            )
    print_whole(console, table)


def _fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    return "inf" if math.isinf(r) else f"{r:.2f}x"


def _shown(r: float | None, parts: tuple[float, float]) -> str:
    """A ratio of `parts`, or "-" for 0 over 0: nothing to compare is not "0.00x"."""
    return "-" if parts == (0, 0) else _fmt_ratio(r)


def _ratio_cells(h: Headline) -> tuple[str, str]:
    """Ours' under and actions ratios as shown ("-" out of range)."""
    if h.ours is None:
        return "-", "-"
    return (
        _shown(h.under_ratio, (h.ours.under_unit_s, h.base.under_unit_s)),
        _shown(h.actions_ratio, (h.ours.actions, h.base.actions)),
    )


def _fmt_yardstick(h: Headline, reading: Reading | None, ratio: float | None) -> str:
    """A yardstick's under unit-s at the baseline's unit-hours, and its ratio to the
    baseline's ("-" when not computed)."""
    if reading is None:
        return "-"
    shown = _shown(ratio, (reading.under_unit_s, h.base.under_unit_s))
    return f"{reading.under_unit_s:,.1f} ({shown})"


LEAST_NOTE = (
    "least possible: the fewest under unit-s any policy could leave at the baseline's "
    f"unit-hours, knowing the whole trace (a lower bound); above {UNDER_RATIO_GOAL:g}x the "
    "goal is out of reach for every policy on that trace"
)


def print_headline(heads: list[Headline], console: Console | None = None) -> None:
    """Ours at each baseline's default unit-hours, and the acceptance verdict."""
    console = console or stdout_console()
    better = better_baseline({h.baseline: h.base for h in heads})
    table = Table(
        title=(
            f"ours at each baseline's default unit-hours; goal vs the better baseline "
            f"(fewer under unit-s): under <= {UNDER_RATIO_GOAL:g}x, actions <= 1x"
        )
    )
    cols = ["baseline", "unit-hours", "under unit-s", "actions", "ours under unit-s"]
    cols += ["ours actions", "under ratio", "actions ratio", "verdict", "least possible"]
    cols += ["fixed in hindsight"]
    for col in cols:
        table.add_column(col, justify="left" if col == "baseline" else "right")
    for h in heads:
        b = h.base
        if h.ours is None:
            ours_u, ours_a = f"outside ours' {h.lo:,.2f}..{h.hi:,.2f} unit-h", "-"
        else:
            ours_u, ours_a = f"{h.ours.under_unit_s:,.1f}", f"{h.ours.actions:,.1f}"
        verdict = h.verdict if h.baseline == better else ""
        table.add_row(
            h.baseline + (" (better)" if h.baseline == better else ""),
            f"{b.unit_hours:,.2f}",
            f"{b.under_unit_s:,.1f}",
            f"{b.actions:,}",
            ours_u,
            ours_a,
            *_ratio_cells(h),
            verdict,
            _fmt_yardstick(h, h.least, h.least_ratio),
            _fmt_yardstick(h, h.fixed, h.fixed_ratio),
        )
    print_whole(console, table)
    console.print(LEAST_NOTE)
    console.print(
        "fixed in hindsight: under unit-s of one fixed count at the baseline's unit-hours, "
        "chosen knowing the whole trace (a yardstick, not a policy; no verdict uses it)"
    )


UNBOUNDED_WIDTH = 10_000
"""Columns to measure a table's natural width in (more than any table here needs)."""


def print_whole(console: Console, table: Table) -> None:
    """Print `table` without cutting a cell to "…": into a pipe or a file, as wide as
    its widest row needs (a number cut short is a wrong number); on a terminal, the
    terminal's width."""
    if console.is_terminal:
        console.print(table)
        return
    wide = console.options.update_width(UNBOUNDED_WIDTH)
    width = console.width
    console.width = max(width, Measurement.get(console, wide, table).maximum)
    try:
        console.print(table)
    finally:
        console.width = width


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def headline_doc(heads: list[Headline]) -> dict[str, Any]:
    """The headline as JSON: per baseline, ours' reading and the verdict."""
    better = better_baseline({h.baseline: h.base for h in heads})
    per: dict[str, Any] = {}
    for h in heads:
        per[h.baseline] = {
            "default": asdict(h.base),
            "ours_under_unit_s": None if h.ours is None else h.ours.under_unit_s,
            "ours_actions": None if h.ours is None else h.ours.actions,
            "in_range": h.ours is not None,
            "under_ratio": _finite(h.under_ratio),
            "actions_ratio": _finite(h.actions_ratio),
            "met": h.met,
            "least_possible": None
            if h.least is None
            else {
                "under_unit_s": h.least.under_unit_s,
                "under_ratio": _finite(h.least_ratio),
                "out_of_reach": h.out_of_reach,
            },
            "fixed_in_hindsight": None
            if h.fixed is None
            else {"under_unit_s": h.fixed.under_unit_s, "under_ratio": _finite(h.fixed_ratio)},
        }
    met = next((h.met for h in heads if h.baseline == better), None)
    return {"better": better, "under_ratio_goal": UNDER_RATIO_GOAL, "baselines": per, "met": met}


def write_json(
    dest: Path | TextIO,
    trace: str,
    totals: list[Totals],
    series: dict[str, Series],
    meta: dict[str, Any],
    points: dict[str, list[Point]] | None = None,
    heads: list[Headline] | None = None,
) -> None:
    """Write {trace, meta, policies: {NAME: {totals, series, frontier}}, headline}:
    totals and per-second series {t, demand, desired, ready} of each policy's
    default setting, and its sweep points by unit-hours."""
    doc: dict[str, Any] = {"trace": trace, "meta": meta, "policies": {}}
    for t in totals:
        s = series.get(t.policy)
        entry: dict[str, Any] = {"totals": asdict(t)}
        if s is not None:
            entry["series"] = _Raw(s)
        if points is not None and t.policy in points:
            entry["frontier"] = [asdict(p) for p in frontier(points[t.policy])]
        doc["policies"][t.policy] = entry
    if heads is not None:
        doc["headline"] = headline_doc(heads)
    if isinstance(dest, Path):
        with dest.open("w", encoding="utf-8") as f:
            _dump(doc, f)
    else:
        _dump(doc, dest)
        dest.write("\n")


class _Raw:
    """A series written as JSON arrays piece by piece, never as one Python list."""

    def __init__(self, series: Series) -> None:
        self.series = series


def _dump(value: Any, out: TextIO) -> None:
    """json.dump, except that series are streamed from their arrays."""
    if isinstance(value, _Raw):
        s = value.series
        out.write("{")
        columns: list[tuple[str, array[Any]]] = [
            ("t", s.t),
            ("demand", s.demand),
            ("desired", s.desired),
            ("ready", s.ready),
        ]
        for i, (key, arr) in enumerate(columns):
            out.write(("," if i else "") + f'"{key}":[')
            for start in range(0, len(arr), 65_536):
                chunk = arr[start : start + 65_536].tolist()
                out.write(("," if start else "") + json.dumps(chunk, separators=(",", ":"))[1:-1])
            out.write("]")
        out.write("}")
    elif isinstance(value, dict):
        out.write("{")
        for i, (k, v) in enumerate(value.items()):
            out.write(("," if i else "") + json.dumps(k) + ":")
            _dump(v, out)
        out.write("}")
    else:
        out.write(json.dumps(value, separators=(",", ":")))
