"""The per-minute rollup: each pool's published metrics folded into one PoolMinute a minute.

Pure: `fold` takes the open minutes and one PoolMetrics and returns the open
minutes and, when the metrics start a later minute, the finished one. The
watcher publishes what comes back on `fleet.rollup.<pool>` (de-duplicated by
pool and minute, so a restarted watcher's repeat lands once). A week of a pool
is then 10,080 messages whatever the tick rate or the fleet's size, which is
what lets a week of history stay small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from contracts.telemetry import PoolMetrics, PoolMinute
from services.watcher.units import UnitTable

MINUTE_S = 60.0


@dataclass
class OpenMinute:
    """Sums of one pool's metrics within a minute not yet finished."""

    start: float
    samples: int = 0
    ready: float = 0.0
    ready_min: int = 0
    ready_max: int = 0
    idle_min: int = 0
    pending: float = 0.0
    demand: float = 0.0
    demand_max: float = 0.0
    capacity: float = 0.0
    utilization: float = 0.0
    arrivals: float = 0.0
    queue_max: float = 0.0


def minute_of(ts: float) -> float:
    """The start of the minute `ts` falls in."""
    return math.floor(ts / MINUTE_S) * MINUTE_S


def idle_units(table: UnitTable) -> dict[str, int]:
    """Per pool, the units that are up and serving nothing (in flight 0 at their last
    heartbeat): what idle cleanup could release."""
    out: dict[str, int] = {}
    for rec in table.units.values():
        if rec.failed_at is None and rec.last is not None and rec.last.inflight <= 0:
            if rec.state in ("", "ready"):
                out[rec.pool] = out.get(rec.pool, 0) + 1
    return out


def add(m: OpenMinute, metrics: PoolMetrics, idle: int = 0) -> None:
    """Fold one sample (and the pool's idle units then) into the minute."""
    demand = metrics.inflight + metrics.queue_depth
    if m.samples == 0:
        m.ready_min = m.ready_max = metrics.units_ready
        m.idle_min = idle
    m.samples += 1
    m.idle_min = min(m.idle_min, idle)
    m.ready += metrics.units_ready
    m.ready_min = min(m.ready_min, metrics.units_ready)
    m.ready_max = max(m.ready_max, metrics.units_ready)
    m.pending += metrics.units_pending
    m.demand += demand
    m.demand_max = max(m.demand_max, demand)
    m.capacity += metrics.capacity
    m.utilization += metrics.utilization
    m.arrivals += metrics.arrival_rate
    m.queue_max = max(m.queue_max, metrics.queue_depth)


def close(pool: str, m: OpenMinute) -> PoolMinute:
    """The finished minute as published: means over its samples, extremes as seen."""
    n = max(m.samples, 1)
    return PoolMinute(
        ts=m.start,
        pool=pool,
        samples=m.samples,
        units_ready=round(m.ready / n, 4),
        units_ready_min=m.ready_min,
        units_ready_max=m.ready_max,
        units_idle_min=m.idle_min,
        units_pending=round(m.pending / n, 4),
        demand=round(m.demand / n, 4),
        demand_max=round(m.demand_max, 4),
        capacity=round(m.capacity / n, 4),
        utilization=min(1.0, round(m.utilization / n, 4)),
        arrival_rate=round(m.arrivals / n, 4),
        queue_depth_max=round(m.queue_max, 4),
    )


def fold(
    minutes: dict[str, OpenMinute], metrics: PoolMetrics, idle: int = 0
) -> tuple[dict[str, OpenMinute], PoolMinute | None]:
    """`minutes` with `metrics` folded in, and the pool's minute it finished, if any.

    A sample dated in an earlier minute than the open one (a burst publish that
    raced a tick) is folded into the open minute rather than reopening the past."""
    start = minute_of(metrics.ts)
    current = minutes.get(metrics.pool)
    done = None
    if current is None or start > current.start:
        if current is not None and current.samples:
            done = close(metrics.pool, current)
        current = OpenMinute(start=start)
        minutes = {**minutes, metrics.pool: current}
    add(current, metrics, idle)
    return minutes, done


def forget(
    minutes: dict[str, OpenMinute], pool: str
) -> tuple[dict[str, OpenMinute], PoolMinute | None]:
    """A pool that is gone: its open minute, finished as it stands."""
    current = minutes.get(pool)
    if current is None:
        return minutes, None
    rest = {p: m for p, m in minutes.items() if p != pool}
    return rest, close(pool, current) if current.samples else None
