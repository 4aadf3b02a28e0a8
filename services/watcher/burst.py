"""Bursts seen on the telemetry itself: a pool's metrics published at once when its load jumps.

The tick publishes every pool's metrics once a second; a 2x load step that
lands just after a tick would wait a whole tick before the scaler hears of it.
`Bursts` follows each pool's load heartbeat by heartbeat (the change each one
brings, added to what the last publish saw: a few float operations on the hot
path) and says when to publish out of tick:

- demand (in flight + queued) reaches `factor` times the last published
  demand (at least one request's worth), or
- utilization crosses the pool's `scale_up_at` from below,

at most once per pool per `min_interval_s`, so a storm of heartbeats cannot
flood the metrics stream. A step reaches a pool's units' heartbeats one by
one, so the first publish may show only part of it; a further rise of half
the factor (1.25x), held back by the interval, is published when the interval
ends (`flush`), once; smaller moves wait for the tick. Each
publish, in tick or out, becomes the new baseline, so a steady high load does
not fire again; the next tick corrects whatever the running sums got wrong (a
stale unit, a draining one). Pure: no clock, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from contracts.telemetry import PoolMetrics, UnitTelemetry
from services.watcher.windows import PoolSample, pool_metrics, utilization

MIN_DEMAND = 1.0
"""The baseline demand a jump is measured from when the pool had less: from idle, a
first request or two is a jump, a fraction of one is not."""


@dataclass(slots=True)
class PoolLoad:
    """One pool's load: as last published, plus what heartbeats changed since."""

    inflight: float = 0.0
    queue_depth: float = 0.0
    capacity: float = 0.0
    ready: int = 0
    pending: int = 0
    arrival_rate: float = 0.0
    window_s: float = 1.0
    published_demand: float = 0.0
    published_utilization: float = 0.0
    fast_at: float = -math.inf
    """When the last out-of-tick publish went out."""
    held: bool = False
    """A further rise came inside the interval: `flush` publishes it when the interval ends."""


@dataclass(slots=True, kw_only=True)
class Bursts:
    """Per pool running load and the rule for publishing out of tick."""

    factor: float
    """Publish at once when demand reaches this many times the last published demand; 0: off."""
    min_interval_s: float
    """Fewest seconds between two out-of-tick publishes of one pool."""
    scale_up_at: dict[str, float]
    """Each configured pool's `scale_up_at`; `default_scale_up_at` for the others."""
    default_scale_up_at: float
    pools: dict[str, PoolLoad] = field(default_factory=dict)

    def heartbeat(
        self, prev: UnitTelemetry | None, t: UnitTelemetry, now: float
    ) -> PoolMetrics | float | None:
        """Fold one heartbeat (`prev`: the unit's previous one).

        Returns the metrics to publish now; or, for the first rise the interval
        holds back, the time at which to call `flush`; or None."""
        load = self.pools.get(t.pool)
        if load is None:
            load = self.pools[t.pool] = PoolLoad()
        if prev is None:
            load.inflight += t.inflight
            load.queue_depth += t.queue_depth
            if t.healthy:
                load.capacity += t.capacity
                load.ready += 1
        else:
            load.inflight += t.inflight - prev.inflight
            load.queue_depth += t.queue_depth - prev.queue_depth
            load.capacity += (t.capacity if t.healthy else 0.0) - (
                prev.capacity if prev.healthy else 0.0
            )
            load.ready += int(t.healthy) - int(prev.healthy)
        if self.factor <= 0:
            return None
        demand = load.inflight + load.queue_depth
        if now - load.fast_at < self.min_interval_s:
            # The rest of the step that was just published, not noise around it: a rise
            # of half the factor again (1.25x for 1.5), held to the interval's end.
            if load.held or demand < (1 + self.factor) / 2 * load.published_demand:
                return None
            load.held = True
            return load.fast_at + self.min_interval_s
        if demand < self.factor * max(load.published_demand, MIN_DEMAND):
            threshold = self.scale_up_at.get(t.pool, self.default_scale_up_at)
            if load.published_utilization >= threshold:
                return None
            if utilization(load.inflight, load.capacity) < threshold:
                return None
        return self._sent(load, self._metrics(t.pool, load, now))

    def flush(self, pool: str, now: float) -> PoolMetrics | None:
        """The held-back rise of `pool` at the end of its interval, or None if a tick
        published in the meantime."""
        load = self.pools.get(pool)
        if load is None or not load.held:
            return None
        return self._sent(load, self._metrics(pool, load, now))

    @staticmethod
    def _metrics(pool: str, load: PoolLoad, now: float) -> PoolMetrics:
        return pool_metrics(
            pool,
            ts=now,
            window_s=load.window_s,
            ready=load.ready,
            pending=load.pending,
            inflight=load.inflight,
            capacity=load.capacity,
            queue_depth=load.queue_depth,
            arrival_rate=load.arrival_rate,
        )

    def _sent(self, load: PoolLoad, m: PoolMetrics) -> PoolMetrics:
        load.fast_at = m.ts
        self._baseline(load, m)
        return m

    def published(self, m: PoolMetrics, sample: PoolSample) -> None:
        """The tick published `m`, from `sample` (the pool's state now): count from there."""
        load = self.pools.get(m.pool)
        if load is None:
            load = self.pools[m.pool] = PoolLoad()
        load.inflight, load.queue_depth = sample.inflight, sample.queue_depth
        load.capacity, load.ready, load.pending = sample.capacity, sample.ready, sample.pending
        load.arrival_rate, load.window_s = m.arrival_rate, m.window_s
        self._baseline(load, m)

    def forget(self, pool: str) -> None:
        """The pool is gone (no units, not configured)."""
        self.pools.pop(pool, None)

    @staticmethod
    def _baseline(load: PoolLoad, m: PoolMetrics) -> None:
        load.published_demand = m.inflight + m.queue_depth
        load.published_utilization = m.utilization
        load.held = False
