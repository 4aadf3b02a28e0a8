"""Load and idle capacity from the per-minute rollup.

Minutes of every pool are summed first (the fleet's demand in that minute),
then averaged by hour of day and by day of week (UTC), so a busy hour is busy
for the fleet and not for one pool. Idle capacity is per pool: ready units
times the share of their capacity that served nothing, minute by minute.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from contracts.telemetry import PoolMinute

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass
class _Sum:
    demand: float = 0.0
    peak: float = 0.0
    ready: float = 0.0
    busy: float = 0.0
    capacity: float = 0.0
    minutes: int = 0


def in_period(rollup: Iterable[PoolMinute], lo: float, hi: float) -> list[PoolMinute]:
    """The minutes that start in [lo, hi), oldest first, one per pool and minute."""
    unique = {(m.pool, m.ts): m for m in rollup if lo <= m.ts < hi}
    return sorted(unique.values(), key=lambda m: (m.ts, m.pool))


def _fleet_minutes(minutes: list[PoolMinute]) -> dict[float, _Sum]:
    out: dict[float, _Sum] = defaultdict(_Sum)
    for m in minutes:
        s = out[m.ts]
        s.demand += m.demand
        s.peak += m.demand_max
        s.ready += m.units_ready
        s.busy += m.utilization * m.capacity
        s.capacity += m.capacity
        s.minutes = 1
    return out


def _slots(
    fleet: dict[float, _Sum], slot_of: Iterable[tuple[float, str]], names: list[str]
) -> list[dict[str, object]]:
    acc: dict[str, _Sum] = {n: _Sum() for n in names}
    for ts, name in slot_of:
        s, a = fleet[ts], acc[name]
        a.demand += s.demand
        a.peak = max(a.peak, s.peak)
        a.ready += s.ready
        a.busy += s.busy
        a.capacity += s.capacity
        a.minutes += 1
    return [
        {
            "slot": name,
            "demand": round(a.demand / a.minutes, 3) if a.minutes else 0.0,
            "peak_demand": round(a.peak, 3),
            "units_ready": round(a.ready / a.minutes, 3) if a.minutes else 0.0,
            "utilization": round(a.busy / a.capacity, 4) if a.capacity else 0.0,
            "minutes": a.minutes,
        }
        for name, a in acc.items()
    ]


def by_hour(minutes: list[PoolMinute]) -> list[dict[str, object]]:
    """Mean fleet load in each UTC hour of the day, 00 to 23."""
    fleet = _fleet_minutes(minutes)
    names = [f"{h:02d}" for h in range(24)]
    return _slots(fleet, ((ts, f"{time.gmtime(ts).tm_hour:02d}") for ts in fleet), names)


def by_weekday(minutes: list[PoolMinute]) -> list[dict[str, object]]:
    """Mean fleet load on each UTC day of the week, Mon to Sun."""
    fleet = _fleet_minutes(minutes)
    return _slots(fleet, ((ts, WEEKDAYS[time.gmtime(ts).tm_wday]) for ts in fleet), list(WEEKDAYS))


def peak_hours(hours: list[dict[str, object]], n: int = 3) -> list[int]:
    """The `n` hours of the day with the highest mean demand, busiest first."""
    busy = [h for h in hours if float(str(h["demand"])) > 0]
    busy.sort(key=lambda h: -float(str(h["demand"])))
    return [int(str(h["slot"])) for h in busy[:n]]


@dataclass(frozen=True)
class PoolUse:
    """One pool's capacity over the period, from its minutes."""

    pool: str
    unit_hours: float
    idle_unit_hours: float
    utilization: float
    base_units: int
    """Units ready in all but 1 % of the minutes (so a start-up or an outage of a few
    minutes does not hide the base load)."""
    peak_units: int
    minutes: int


def pool_use(minutes: list[PoolMinute]) -> dict[str, PoolUse]:
    """Per pool: unit-hours, idle unit-hours, mean utilization, fewest and most units."""
    by_pool: dict[str, list[PoolMinute]] = defaultdict(list)
    for m in minutes:
        by_pool[m.pool].append(m)
    out = {}
    for pool, ms in sorted(by_pool.items()):
        capacity = sum(m.capacity for m in ms)
        out[pool] = PoolUse(
            pool=pool,
            unit_hours=sum(m.units_ready for m in ms) / 60.0,
            idle_unit_hours=sum(m.units_ready * (1.0 - m.utilization) for m in ms) / 60.0,
            utilization=sum(m.utilization * m.capacity for m in ms) / capacity if capacity else 0,
            base_units=sorted(m.units_ready_min for m in ms)[len(ms) // 100],
            peak_units=max(m.units_ready_max for m in ms),
            minutes=len(ms),
        )
    return out


def excess_runs(minutes: list[PoolMinute], floor_units: int) -> list[int]:
    """Lengths, in minutes, of the stretches in which ready units served nothing (beyond
    the pool's `min`, which idle cleanup never goes below): one stretch per idle unit (the
    second idle unit's stretch lies within the first's), so a threshold T releases each
    stretch's minutes after its first T."""
    excess = []
    prev = None
    for m in minutes:
        if prev is not None and m.ts - prev > 60.0:
            excess.append(0)  # a gap in the history ends every stretch
        excess.append(max(0, min(m.units_idle_min, m.units_ready_min - floor_units)))
        prev = m.ts
    runs: list[int] = []
    open_runs: list[int] = []  # open_runs[j]: length so far of the stretch of extra unit j+1
    for e in [*excess, 0]:
        while len(open_runs) > e:
            runs.append(open_runs.pop())
        for j in range(e):
            if j < len(open_runs):
                open_runs[j] += 1
            else:
                open_runs.append(1)
    return runs
