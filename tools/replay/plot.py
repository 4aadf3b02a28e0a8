"""`fleet replay --plot FILE.png`: the frontiers, and the worst-served 10 minutes.

Left: each policy's frontier (unit-hours against under-provisioned unit-s, one
marker per knob setting, the default circled). Right: demand (in units) and
each policy's ready units around the 10 minutes where ours (or the first
policy) was most under-provisioned, so a reader sees what went wrong there;
with no scored second (all missing telemetry) the right panel says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tools.replay.frontier import Point, frontier
from tools.replay.sim import Series, Totals

WINDOW_S = 600
"""Length of the worst-served stretch, seconds."""
MARGIN_S = 600
"""Seconds shown either side of it."""


def worst_window(series: Series, unit_capacity: float, window_s: int = WINDOW_S) -> int:
    """Index into the series where the `window_s` seconds with the most
    under-provisioned unit-seconds start (0 for a short series)."""
    n = len(series.demand)
    if n <= window_s:
        return 0
    demand, ready = series.demand, series.ready

    def short(i: int) -> float:
        return max(0.0, demand[i] / unit_capacity - ready[i])

    run = sum(short(i) for i in range(window_s))
    best, at = run, 0
    for i in range(window_s, n):
        run += short(i) - short(i - window_s)
        if run > best + 1e-9:
            best, at = run, i - window_s + 1
    return at


def draw(
    path: Path,
    title: str,
    points: dict[str, list[Point]],
    defaults: dict[str, Totals],
    series: dict[str, Series],
    unit_capacity: float,
) -> None:
    """Write the PNG; raises OSError if it cannot be written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5))
    fig.suptitle(title)
    for name, tot in defaults.items():
        pts = frontier(points.get(name, []))
        line = left.plot(
            [p.unit_hours for p in pts], [p.under_unit_s for p in pts], marker="o", label=name
        )
        left.scatter(
            [tot.unit_hours],
            [tot.under_unit_s],
            s=160,
            facecolors="none",
            edgecolors=line[0].get_color() if line else "k",
        )
        for p in pts:
            left.annotate(f"{p.knob:g}", (p.unit_hours, p.under_unit_s), fontsize=7)
    left.set_xlabel("unit-hours")
    left.set_ylabel("under-provisioned unit-seconds")
    left.set_title("frontiers (knob: target utilization; circle: default)")
    left.legend()
    key = "ours" if "ours" in series else next(iter(series), None)
    if key is not None and len(series[key].t) > 0:
        _worst(right, series, key, unit_capacity)
    else:
        right.set_axis_off()
        right.text(0.5, 0.5, "no scored seconds: no worst 10 minutes", ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _worst(right: Any, series: dict[str, Series], key: str, unit_capacity: float) -> None:
    """Demand and each policy's ready units around `key`'s worst-served stretch."""
    ref = series[key]
    at = worst_window(ref, unit_capacity)
    lo, hi = max(0, at - MARGIN_S), min(len(ref.t), at + WINDOW_S + MARGIN_S)
    t = [x / 60 for x in ref.t[lo:hi]]
    right.plot(t, [d / unit_capacity for d in ref.demand[lo:hi]], color="k", label="demand")
    for name, s in series.items():
        right.step(t, list(s.ready[lo:hi]), where="post", label=f"{name} ready")
    right.axvspan(ref.t[at] / 60, ref.t[min(len(ref.t) - 1, at + WINDOW_S)] / 60, alpha=0.1)
    right.set_xlabel("minute of the trace")
    right.set_ylabel("units")
    right.set_title(f"worst-served 10 minutes for {key} (shaded)")
    right.legend()
