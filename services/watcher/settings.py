"""The watcher's settings: `[watcher]` in fleet.toml, `FLEET_WATCHER__<KEY>` in the environment."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from contracts.base import Positive
from services.kit.config import KitSettings
from services.kit.pools import PoolConfig
from services.watcher.prometheus import PrometheusSource


class WatcherOptions(msgspec.Struct, kw_only=True):
    """`[watcher]`."""

    tick_s: Positive = 1.0
    """Seconds between PoolMetrics per pool; 1 s lets the scaler's 6 s panic window see bursts."""
    window_s: Positive = 1.0
    """Seconds of ticks averaged into one PoolMetrics. One tick by default: each unit's
    latest heartbeat already absorbs jitter around a tick, and the scaler keeps its own
    stable and panic windows, so averaging here too would only delay a burst by a tick."""
    heartbeat_timeout_s: Positive = 10.0
    """Seconds without a heartbeat after which a unit is declared failed (units heartbeat ~1 s)."""
    unhealthy_limit: Annotated[int, Meta(ge=1)] = 3
    """Heartbeats in a row with healthy=false after which a unit is declared failed."""
    burst_factor: Annotated[float, Meta(ge=0)] = 1.5
    """A pool whose demand (in flight + queued) reaches this many times its last published
    demand gets its PoolMetrics at once, without waiting for the tick (as does one whose
    utilization crosses its `scale_up_at`), so the scaler sees a burst within milliseconds.
    1.5 catches a 2x step halfway through its units' heartbeats; 0 turns the fast path off."""
    burst_rate_per_s: Positive = 10.0
    """Most out-of-tick PoolMetrics per pool per second: a heartbeat storm adds at most
    this many messages per pool per second to the metrics stream..."""
    burst_size: Annotated[int, Meta(ge=1)] = 2
    """... and at most this many in a row: a step's first part and its rest, as the
    pool's units report it one by one."""
    max_load_ratio: Positive = 100.0
    """Telemetry with inflight above this many times capacity is rejected as absurd."""
    forget_after_s: Positive = 3600.0
    """Seconds an ended (failed or terminated) unit is remembered, so it is never failed twice."""
    prometheus: dict[str, PrometheusSource] = msgspec.field(default_factory=dict)
    """`[watcher.prometheus.<pool>]`: optional external demand per pool."""


class WatcherSettings(KitSettings, kw_only=True):
    """Settings of the watcher service."""

    watcher: WatcherOptions = msgspec.field(default_factory=WatcherOptions)
    pools: dict[str, PoolConfig] = msgspec.field(default_factory=dict)
    """`[pools.<pool>]`: only the names matter here (the tables are validated all the same).
    A configured pool gets PoolMetrics every tick even before it has a unit, so the scaler
    can bring it up to its `min`."""
