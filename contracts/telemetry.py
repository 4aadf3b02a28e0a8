"""Telemetry from units and the per-pool metrics the watcher derives from it."""

from __future__ import annotations

from contracts.base import Amount, Count, Fraction, Message, Seconds, Token


class UnitTelemetry(Message, frozen=True, kw_only=True):
    """One heartbeat from a unit, on `fleet.telemetry.<pool>.<unit>`."""

    pool: Token
    unit: Token
    provider: Token = "unknown"
    inflight: Amount = 0.0
    """Requests or sessions being served right now."""
    capacity: Amount = 1.0
    """Requests or sessions this unit can serve at once."""
    queue_depth: Amount = 0.0
    """Requests waiting for this unit."""
    utilization: Fraction = 0.0
    gpu_util: Fraction = 0.0
    healthy: bool = True
    idle_s: Seconds = 0.0
    """Seconds since the unit last served a request."""
    tokens: Amount = 0.0
    """Model tokens processed since the previous heartbeat (agent runners)."""
    completed: Amount = 0.0
    """Requests finished since the previous heartbeat; with the change in inflight and
    queue_depth it gives the arrivals (the watcher's `arrival_rate`)."""


class PoolMetrics(Message, frozen=True, kw_only=True):
    """One pool's aggregate over a window, on `fleet.metrics.<pool>` every tick."""

    pool: Token
    window_s: Seconds = 1.0
    units_ready: Count = 0
    units_pending: Count = 0
    """Units requested or booting, not serving yet."""
    inflight: Amount = 0.0
    capacity: Amount = 0.0
    queue_depth: Amount = 0.0
    utilization: Fraction = 0.0
    arrival_rate: Amount = 0.0
    """Requests per second arriving at the pool, averaged over the window."""
    jobs_queued: Count = 0
    """Jobs waiting in the pool's work queues (every priority), from the streams' own
    counts; already included in `queue_depth`, so the scaler sizes for them."""
    jobs_running: Count = 0
    """Jobs delivered to the pool's units and not yet acked; included in `inflight`."""
    oldest_job_age_s: Seconds = 0.0
    """How long the oldest job in the pool's queues has waited, seconds."""


class PoolMinute(Message, frozen=True, kw_only=True):
    """One pool's minute of metrics, on `fleet.rollup.<pool>` (stream FLEET_ROLLUP).

    The watcher folds every PoolMetrics it publishes into these, so a week of a
    pool is 10,080 small messages whatever the tick or the fleet's size; history
    reports and what-if replays read them instead of the per-second metrics.
    `ts` is the minute's start (unix seconds, a multiple of 60)."""

    pool: Token
    samples: Count = 0
    """PoolMetrics folded into this minute."""
    units_ready: Amount = 0.0
    """Mean ready units over the minute."""
    units_ready_min: Count = 0
    units_ready_max: Count = 0
    units_idle_min: Count = 0
    """Fewest ready units serving nothing at any tick of the minute: units that idle
    cleanup could have released, the rest being busy."""
    units_pending: Amount = 0.0
    """Mean units requested or booting."""
    demand: Amount = 0.0
    """Mean in flight plus queued, the load a replay serves."""
    demand_max: Amount = 0.0
    capacity: Amount = 0.0
    """Mean requests the ready units serve at once."""
    utilization: Fraction = 0.0
    """Mean in-flight work over ready capacity."""
    arrival_rate: Amount = 0.0
    """Mean requests per second arriving."""
    queue_depth_max: Amount = 0.0
