"""Bursts seen on the telemetry itself: a pool's metrics published at once when its load jumps.

The tick publishes every pool's metrics once a second; a 2x load step that
lands just after a tick would wait a whole tick before the scaler hears of it.
`Bursts` follows each pool's load heartbeat by heartbeat (the change each one
brings, added to what the last publish saw: a few float operations on the hot
path) and says when to publish out of tick:

- demand (in flight + queued) reaches `factor` times the last published
  demand (at least one request's worth), or
- utilization crosses the pool's `scale_up_at` from below, or
- within one interval (1 / `rate_per_s`) of such a publish, demand rises by
  half the factor again (1.25x for 1.5): a step reaches the heartbeats of a
  pool's units one by one, so the first publish may show only part of it.

Each pool has a token bucket: at most `rate_per_s` publishes a second out of
tick, `burst` of them in a row, so a storm of heartbeats cannot flood the
metrics stream. A due publish that finds the bucket empty is held and goes
out when the next token comes (`flush`), once. Each publish, in tick or out,
becomes the new baseline, so a steady high load does not fire again; the next
tick corrects whatever the running sums got wrong (a stale unit, a draining
one). Pure: no clock, no I/O.
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

    tokens: float
    """Out-of-tick publishes the pool may make now (its token bucket)."""
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
    """When the last out-of-tick publish went out (the bucket is refilled from then)."""
    held: bool = False
    """A publish was due with the bucket empty: `flush` sends it when a token comes."""


@dataclass(slots=True, kw_only=True)
class Bursts:
    """Per pool running load and the rule for publishing out of tick."""

    factor: float
    """Publish at once when demand reaches this many times the last published demand; 0: off."""
    rate_per_s: float
    """Most out-of-tick publishes per pool per second."""
    burst: int
    """... of which at most this many in a row."""
    scale_up_at: dict[str, float]
    """Each configured pool's `scale_up_at`; `default_scale_up_at` for the others."""
    default_scale_up_at: float
    pools: dict[str, PoolLoad] = field(default_factory=dict)

    def heartbeat(
        self, prev: UnitTelemetry | None, t: UnitTelemetry, now: float
    ) -> PoolMetrics | float | None:
        """Fold one heartbeat (`prev`: the unit's previous one).

        Returns the metrics to publish now; or, when one is due but the pool's
        bucket is empty, the time at which to call `flush` (once); or None."""
        load = self._load(t.pool)
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
        if self.factor <= 0 or load.held:
            return None
        demand = load.inflight + load.queue_depth
        if now - load.fast_at < 1 / self.rate_per_s:  # the rest of a step just published
            if demand < (1 + self.factor) / 2 * load.published_demand:
                return None
        elif demand < self.factor * max(load.published_demand, MIN_DEMAND):
            threshold = self.scale_up_at.get(t.pool, self.default_scale_up_at)
            if load.published_utilization >= threshold:
                return None
            if utilization(load.inflight, load.capacity) < threshold:
                return None
        tokens = self._tokens(load, now)
        if tokens >= 1:
            return self._sent(t.pool, load, now, tokens)
        load.held = True
        return now + (1 - tokens) / self.rate_per_s

    def flush(self, pool: str, now: float) -> PoolMetrics | None:
        """The publish held for a token, or None if a tick published in the meantime."""
        load = self.pools.get(pool)
        if load is None or not load.held:
            return None
        return self._sent(pool, load, now, max(1.0, self._tokens(load, now)))

    def published(self, m: PoolMetrics, sample: PoolSample) -> None:
        """The tick published `m`, from `sample` (the pool's state now): count from there."""
        load = self._load(m.pool)
        load.inflight, load.queue_depth = sample.inflight, sample.queue_depth
        load.capacity, load.ready, load.pending = sample.capacity, sample.ready, sample.pending
        load.arrival_rate, load.window_s = m.arrival_rate, m.window_s
        self._baseline(load, m)

    def forget(self, pool: str) -> None:
        """The pool is gone (no units, not configured)."""
        self.pools.pop(pool, None)

    def _load(self, pool: str) -> PoolLoad:
        load = self.pools.get(pool)
        if load is None:
            load = self.pools[pool] = PoolLoad(tokens=float(self.burst))
        return load

    def _tokens(self, load: PoolLoad, now: float) -> float:
        """The bucket refilled since the last out-of-tick publish."""
        return min(float(self.burst), load.tokens + (now - load.fast_at) * self.rate_per_s)

    def _sent(self, pool: str, load: PoolLoad, now: float, tokens: float) -> PoolMetrics:
        m = pool_metrics(
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
        load.tokens, load.fast_at = tokens - 1, now
        self._baseline(load, m)
        return m

    @staticmethod
    def _baseline(load: PoolLoad, m: PoolMetrics) -> None:
        load.published_demand = m.inflight + m.queue_depth
        load.published_utilization = m.utilization
        load.held = False
