"""Per-pool aggregates of the unit table, and the sliding windows they are averaged over.

Every tick `aggregate` sums the unit table into one `PoolSample` per pool,
`PoolWindow.add` keeps the samples of the last `window_s` seconds, and
`PoolWindow.metrics` turns them into the PoolMetrics the scaler reads:
unit counts and capacity as of now, demand averaged over the window (so one
heartbeat arriving just before or after a tick does not make the pool jump),
and the arrival rate as requests arrived over the window's span. Pure: no
clock, no I/O.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from contracts.events import TERMINAL_STATES
from contracts.telemetry import PoolMetrics
from services.watcher.units import PENDING_STATES, UnitTable

Measure = Literal["inflight", "queue_depth", "arrival_rate"]


@dataclass(slots=True)
class PoolSample:
    """One pool at one tick."""

    t: float
    dt: float
    """Seconds this sample covers (since the previous tick)."""
    ready: int = 0
    pending: int = 0
    inflight: float = 0.0
    capacity: float = 0.0
    queue_depth: float = 0.0
    arrivals: float = 0.0
    """Requests that arrived during `dt`."""


def aggregate(
    table: UnitTable, now: float, dt: float, fresh_s: float, pools: set[str] | None = None
) -> dict[str, PoolSample]:
    """One sample per pool from the unit table (plus empty samples for `pools`).

    A unit is ready when its last heartbeat is fresh and healthy, or when its
    lifecycle says `ready` and it has not sent telemetry yet; requested and
    booting units are pending; draining, unhealthy and ended units add no
    capacity, but the requests a draining or unhealthy unit still holds count
    as demand.
    """
    out: dict[str, PoolSample] = {p: PoolSample(now, dt) for p in pools or ()}
    for rec in table.units.values():
        s = out.get(rec.pool)
        if s is None:
            s = out[rec.pool] = PoolSample(now, dt)
        if rec.failed_at is not None or rec.state in TERMINAL_STATES:
            continue  # the pool still reports (zero) until its ended units are forgotten
        last = rec.last
        fresh = last is not None and rec.last_seen is not None and now - rec.last_seen < fresh_s
        if fresh and last is not None:
            s.inflight += last.inflight
            s.queue_depth += last.queue_depth
            if last.healthy and rec.state != "draining":
                s.ready += 1
                s.capacity += last.capacity
        elif rec.state in PENDING_STATES:
            s.pending += 1
        elif rec.state == "ready" and rec.last_seen is None:
            s.ready += 1
    for pool, arrived in table.arrivals.items():
        s = out.get(pool)
        if s is None:
            s = out[pool] = PoolSample(now, dt)
        s.arrivals += arrived
    table.arrivals.clear()
    return out


def with_external(sample: PoolSample, measure: Measure, value: float) -> PoolSample:
    """The sample raised to an external source's view of demand (never lowered)."""
    if measure == "inflight":
        sample.inflight = max(sample.inflight, value)
    elif measure == "queue_depth":
        sample.queue_depth = max(sample.queue_depth, value)
    else:
        sample.arrivals = max(sample.arrivals, value * sample.dt)
    return sample


@dataclass(slots=True)
class PoolWindow:
    """The samples of one pool inside the sliding window."""

    samples: deque[PoolSample] = field(default_factory=deque)

    def add(self, sample: PoolSample, window_s: float) -> None:
        """Append the newest sample and drop those that left the window.

        The window is measured in the samples' own durations, not wall-clock
        horizons: a tick that runs a millisecond early must not keep the previous
        sample in a one-tick window (that would hide a burst for a whole tick)."""
        self.samples.append(sample)
        covered = sum(s.dt for s in self.samples)
        while len(self.samples) > 1 and covered - self.samples[0].dt >= window_s * 0.99:
            covered -= self.samples.popleft().dt

    def metrics(self, pool: str) -> PoolMetrics:
        """The pool's metrics over the window; counts and capacity are the latest."""
        last = self.samples[-1]
        n = len(self.samples)
        span = sum(s.dt for s in self.samples) or 1.0
        return pool_metrics(
            pool,
            ts=last.t,
            window_s=span,
            ready=last.ready,
            pending=last.pending,
            inflight=sum(s.inflight for s in self.samples) / n,
            capacity=last.capacity,
            queue_depth=sum(s.queue_depth for s in self.samples) / n,
            arrival_rate=sum(s.arrivals for s in self.samples) / span,
        )


def pool_metrics(
    pool: str,
    *,
    ts: float,
    window_s: float,
    ready: int,
    pending: int,
    inflight: float,
    capacity: float,
    queue_depth: float,
    arrival_rate: float,
) -> PoolMetrics:
    """PoolMetrics with utilization derived and every value inside the contract's bounds."""
    return PoolMetrics(
        ts=ts,
        pool=pool,
        window_s=round(window_s, 6),
        units_ready=max(0, min(ready, 1_000_000)),
        units_pending=max(0, min(pending, 1_000_000)),
        inflight=max(0.0, min(inflight, 1e9)),
        capacity=max(0.0, min(capacity, 1e9)),
        queue_depth=max(0.0, min(queue_depth, 1e9)),
        utilization=utilization(inflight, capacity),
        arrival_rate=max(0.0, min(arrival_rate, 1e9)),
    )


def utilization(inflight: float, capacity: float) -> float:
    """In-flight work over ready capacity, 0..1; work with no capacity at all is 1."""
    if capacity > 0:
        return max(0.0, min(1.0, inflight / capacity))
    return 1.0 if inflight > 0 else 0.0
