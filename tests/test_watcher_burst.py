"""Bursts seen on the telemetry itself: a pool whose load jumps gets its PoolMetrics at
once, not at the next tick, and the scaler proposes on that message; a storm of
heartbeats adds at most `rate_per_s` publishes per pool per second, two in a row."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from contracts import subjects
from contracts.commands import ScaleProposal
from contracts.telemetry import PoolMetrics, UnitTelemetry
from services.kit.config import load_settings
from services.kit.service import encode
from services.scaler.service import Scaler, ScalerSettings
from services.watcher.burst import Bursts
from services.watcher.service import Watcher
from services.watcher.settings import WatcherSettings
from services.watcher.windows import PoolSample

CAPACITY, UNITS = 8.0, 4
STEADY = 0.7 * CAPACITY  # each unit at the target utilization


def beat(unit: int, demand: float, pool: str = "gpu", healthy: bool = True) -> UnitTelemetry:
    inflight = min(CAPACITY, demand)
    return UnitTelemetry(
        pool=pool,
        unit=f"u{unit}",
        inflight=inflight,
        capacity=CAPACITY,
        queue_depth=demand - inflight,
        healthy=healthy,
    )


def bursts(**kw: Any) -> Bursts:
    opts: dict[str, Any] = {
        "factor": 1.5,
        "rate_per_s": 10.0,
        "burst": 2,
        "scale_up_at": {},
        "default_scale_up_at": 0.8,
    }
    return Bursts(**{**opts, **kw})


def steady_pool(b: Bursts, now: float) -> list[UnitTelemetry]:
    """Four units at the target, as the last tick published them."""
    beats = [beat(u, STEADY) for u in range(UNITS)]
    for t in beats:
        b.heartbeat(None, t, now - 1.0)
    sample = PoolSample(
        t=now, dt=1.0, ready=UNITS, inflight=UNITS * STEADY, capacity=UNITS * CAPACITY
    )
    m = PoolMetrics(
        ts=now,
        pool="gpu",
        units_ready=UNITS,
        inflight=UNITS * STEADY,
        capacity=UNITS * CAPACITY,
        utilization=0.7,
    )
    b.published(m, sample)
    return beats


def test_a_2x_step_publishes_its_first_half_and_its_rest_at_once() -> None:
    b = bursts(scale_up_at={"gpu": 1.0})  # only the demand rules can fire here
    prev = steady_pool(b, 100.0)
    out = [b.heartbeat(prev[u], beat(u, 2 * STEADY), 100.01 + u / 1000) for u in range(UNITS)]
    # the second unit's beat makes 1.5x: published; the fourth's is 1.33x that, the
    # rest of the same step: published too (two in a row); the third's +17 % is not
    assert out[0] is None and out[2] is None
    first, rest = out[1], out[3]
    assert isinstance(first, PoolMetrics) and isinstance(rest, PoolMetrics)
    assert first.inflight + first.queue_depth == pytest.approx(1.5 * UNITS * STEADY)
    assert rest.inflight + rest.queue_depth == pytest.approx(2 * UNITS * STEADY)
    assert (rest.units_ready, rest.capacity) == (UNITS, UNITS * CAPACITY)
    # the bucket is empty: a further rise waits for the next token, then goes out once
    more = beat(0, 4 * STEADY)
    due = b.heartbeat(beat(0, 2 * STEADY), more, 100.02)
    assert due == pytest.approx(100.111)  # the bucket refills at 10 tokens a second
    assert b.heartbeat(more, beat(0, 6 * STEADY), 100.03) is None  # already held
    held = b.flush("gpu", due)
    assert held is not None and held.inflight + held.queue_depth == pytest.approx(67.2)
    assert b.flush("gpu", 100.2) is None


def test_noise_after_a_burst_waits_for_the_tick() -> None:
    b = bursts()
    prev = steady_pool(b, 100.0)
    jump = [beat(u, 2 * STEADY) for u in range(UNITS)]
    assert b.heartbeat(prev[0], jump[0], 100.0) is None
    assert isinstance(b.heartbeat(prev[1], jump[1], 100.01), PoolMetrics)
    wobble = beat(0, 2.2 * STEADY)  # +2.5 % on the pool within the interval
    assert b.heartbeat(jump[0], wobble, 100.02) is None
    assert b.flush("gpu", 100.11) is None


def test_utilization_crossing_scale_up_at_publishes_below_the_factor() -> None:
    b = bursts()
    prev = steady_pool(b, 100.0)
    # one unit from 70 % to 100 %: demand +11 %, pool utilization 0.7 -> 0.775 -> no;
    # a second one: 0.85, over the pool's scale_up_at of 0.8
    assert b.heartbeat(prev[0], beat(0, CAPACITY), 100.1) is None
    m = b.heartbeat(prev[1], beat(1, CAPACITY), 100.2)
    assert m is not None and m.utilization == pytest.approx(0.85)


def test_a_storm_publishes_at_most_once_per_interval() -> None:
    b = bursts()
    prev = steady_pool(b, 100.0)
    fired = []
    high, low = beat(0, 5 * STEADY), beat(0, STEADY)
    for i in range(1000):  # the unit flips between 1x and 5x, 1000 beats in 50 ms
        t, before = (high, low) if i % 2 == 0 else (low, high)
        fired.append(b.heartbeat(prev[0] if i == 0 else before, t, 100.0 + i * 5e-5))
    assert len([m for m in fired if isinstance(m, PoolMetrics)]) == 1
    assert not [m for m in fired if isinstance(m, float)]  # never above what was published
    # once the interval has passed, a new jump over the new baseline publishes again
    assert b.flush("gpu", 100.1) is None
    up = b.heartbeat(low, beat(0, 12 * STEADY), 100.2)  # the storm ended on `low`
    assert isinstance(up, PoolMetrics)


def test_load_rising_for_a_second_publishes_at_most_the_rate_plus_the_burst() -> None:
    b = bursts()
    prev = steady_pool(b, 100.0)
    before, due, sent = prev[0], None, 0
    for i in range(1000):  # one unit's load grows 10 % every millisecond
        now = 100.0 + i / 1000
        if due is not None and now >= due:
            sent += b.flush("gpu", now) is not None
            due = None
        t = beat(0, STEADY * 1.1**i)
        out = b.heartbeat(before, t, now)
        before = t
        if isinstance(out, PoolMetrics):
            sent += 1
        elif out is not None:
            assert due is None  # one held publish at a time
            due = out
    assert 10 <= sent <= 2 + 10


def test_falling_or_steady_load_and_a_disabled_fast_path_never_publish() -> None:
    b = bursts()
    prev = steady_pool(b, 100.0)
    assert all(b.heartbeat(prev[u], beat(u, STEADY / 2), 101.0) is None for u in range(UNITS))
    off = bursts(factor=0.0)
    prev = steady_pool(off, 100.0)
    assert all(off.heartbeat(prev[u], beat(u, 4 * STEADY), 101.0) is None for u in range(UNITS))


def test_a_tick_resets_the_baseline() -> None:
    b = bursts(scale_up_at={"gpu": 1.0})
    prev = steady_pool(b, 100.0)
    high = [beat(u, 2 * STEADY) for u in range(UNITS)]
    assert any(isinstance(b.heartbeat(prev[u], high[u], 100.5), PoolMetrics) for u in range(UNITS))
    sample = PoolSample(t=101.0, dt=1.0, ready=UNITS, inflight=32.0, capacity=32.0)
    sample.queue_depth = 12.8
    m = PoolMetrics(
        ts=101.0, pool="gpu", inflight=32.0, queue_depth=12.8, capacity=32.0, utilization=1.0
    )
    b.published(m, sample)
    assert all(b.heartbeat(high[u], high[u], 102.0 + u) is None for u in range(UNITS))


# -- against a real nats-server ---------------------------------------------------------


async def test_a_load_jump_reaches_the_scaler_before_the_next_tick(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    # A 30 s tick: the watcher publishes once at start, then not again during the test,
    # so only the fast path can explain metrics and a proposal within seconds.
    pool = {"min": 1, "max": 20, "unit_capacity": CAPACITY, "target_utilization": 0.7}
    common: dict[str, Any] = {"stop_deadline_s": 0.5, "pools": {"gpu": pool}}
    watcher = Watcher(
        load_settings(
            WatcherSettings,
            env={},
            overrides={**common, "store": {"dir": str(tmp_path / "w")}, "watcher": {"tick_s": 30}},
        ),
        nats_url=nats_url,
    )
    scaler = Scaler(
        load_settings(
            ScalerSettings, env={}, overrides={**common, "store": {"dir": str(tmp_path)}}
        ),
        nats_url=nats_url,
    )
    seen: asyncio.Queue[PoolMetrics] = asyncio.Queue()
    proposals: asyncio.Queue[ScaleProposal] = asyncio.Queue()

    async def on_metrics(msg: Any) -> None:
        seen.put_nowait(msgspec.json.decode(msg.data, type=PoolMetrics))

    async def on_proposal(msg: Any) -> None:
        proposals.put_nowait(msgspec.json.decode(msg.data, type=ScaleProposal))

    await nc.subscribe(subjects.metrics("gpu"), cb=on_metrics)
    await nc.subscribe(subjects.scale_proposed("gpu"), cb=on_proposal)
    await watcher.start()
    await scaler.start()
    try:

        async def heartbeat_until(demand: float, done: Any) -> Any:
            """Units beat every 50 ms (as units do, faster) until `done` returns a value."""
            async with asyncio.timeout(10):
                while True:
                    for u in range(UNITS):
                        await nc.publish(
                            subjects.telemetry("gpu", f"u{u}"), encode(beat(u, demand))
                        )
                    try:
                        found = done()
                        if found is not None:
                            return found
                        await asyncio.sleep(0.05)
                    except asyncio.QueueEmpty:
                        await asyncio.sleep(0.05)

        def metrics_at_least(total: float) -> Any:
            m = seen.get_nowait()
            return m if m.inflight + m.queue_depth >= total - 1e-9 else None

        await heartbeat_until(STEADY, lambda: metrics_at_least(UNITS * STEADY))
        started = time.time()
        # A 3x step: with no tick to confirm it, the scaler acts on the fast path's
        # metrics alone only when the short window's mean already queues requests (a
        # smaller step waits for a second sample: ADR 0008, revision 2).
        jump = await heartbeat_until(3 * STEADY, lambda: metrics_at_least(2 * UNITS * STEADY))
        async with asyncio.timeout(5):  # the warm-up may have moved the count first
            while (proposal := await proposals.get()).desired <= proposal.current:
                pass
        assert jump.ts >= started and jump.units_ready == UNITS
        assert proposal.current == UNITS and proposal.ts >= jump.ts
        counts = watcher.metrics.counts
        assert counts["metrics_published_fast"] >= 2
        assert counts["metrics_published"] - counts["metrics_published_fast"] == 1  # one tick
    finally:
        await scaler.stop()
        await watcher.stop()
