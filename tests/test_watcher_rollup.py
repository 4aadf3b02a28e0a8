"""A running watcher writes each pool's minute to `fleet.rollup.<pool>`: the history a
week-long report reads. Up to a minute of waiting, so marked slow; the folding itself
is tested without a server in tests/test_history_retention.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client

from contracts import subjects
from contracts.telemetry import PoolMinute, UnitTelemetry
from services.kit.config import load_settings
from services.kit.service import encode
from services.watcher.service import Watcher
from services.watcher.settings import WatcherSettings

pytestmark = pytest.mark.slow


async def test_the_watcher_publishes_one_rollup_a_minute_with_the_idle_units(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    settings = load_settings(
        WatcherSettings,
        env={},
        overrides={
            "store": {"dir": str(tmp_path)},
            "stop_deadline_s": 0.5,
            "watcher": {"tick_s": 0.5, "window_s": 0.5},
        },
    )
    watcher = Watcher(settings, nats_url=nats_url)
    await watcher.start()
    rollup = await nc.subscribe(subjects.rollup("gpu"))
    stop = asyncio.Event()

    async def heartbeats() -> None:
        while not stop.is_set():
            for unit, inflight in (("busy", 3.0), ("idle", 0.0)):
                t = UnitTelemetry(pool="gpu", unit=unit, inflight=inflight, capacity=8)
                await nc.publish(subjects.telemetry("gpu", unit), encode(t))
            await asyncio.sleep(0.5)

    beating = asyncio.create_task(heartbeats())
    try:
        while True:  # the first minute is only part of one
            m = msgspec.json.decode((await rollup.next_msg(timeout=75)).data, type=PoolMinute)
            if m.samples >= 100:  # a whole minute of 0.5 s ticks (120)
                break
        assert m.ts % 60 == 0 and m.units_ready_min == m.units_ready_max == 2
        assert m.units_idle_min == 1 and m.demand == pytest.approx(3.0)
        assert m.utilization == pytest.approx(3 / 16)
        info = await nc.jetstream().stream_info("FLEET_ROLLUP")
        assert info.state.messages >= 1
    finally:
        stop.set()
        await beating
        await rollup.unsubscribe()
        await watcher.stop()
