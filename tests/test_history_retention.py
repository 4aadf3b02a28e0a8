"""History that lasts: the retention setting the streams are created with, and the
watcher's per-minute rollup."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.aio.client import Client

from contracts.streams import ALL_STREAMS, DAY_S, FLEET_AUDIT, retained
from contracts.telemetry import PoolMetrics
from services.kit import ConfigError, Service
from services.kit.config import KitSettings, load_settings
from services.watcher.rollup import fold, forget


class Plain(Service[KitSettings]):
    """A service with nothing of its own: what every service does at start."""

    name = "plain"


def ages(specs: tuple[object, ...]) -> dict[str, float]:
    return {s.name: s.max_age_s / DAY_S for s in specs}  # type: ignore[attr-defined]


def test_history_streams_keep_eight_days_by_default() -> None:
    kept = ages(ALL_STREAMS)
    for name in ("FLEET_METRICS", "FLEET_CMDS", "FLEET_EVENTS", "FLEET_JOBEVENTS"):
        assert kept[name] >= 8, name
    assert kept["FLEET_AUDIT"] >= 8
    assert kept["FLEET_ROLLUP"] >= 30


def test_retention_sets_the_history_streams_and_never_shortens_the_audit() -> None:
    kept = ages(retained(ALL_STREAMS, days=14, rollup_days=60, metrics_days=2))
    assert kept["FLEET_EVENTS"] == kept["FLEET_CMDS"] == kept["FLEET_JOBEVENTS"] == 14
    assert kept["FLEET_METRICS"] == 2 and kept["FLEET_ROLLUP"] == 60
    assert kept["FLEET_AUDIT"] == FLEET_AUDIT.max_age_s / DAY_S  # 30 > 14
    assert ages(retained(ALL_STREAMS, days=40, rollup_days=60))["FLEET_AUDIT"] == 40
    assert kept["JOBS_HIGH"] == ages(ALL_STREAMS)["JOBS_HIGH"]  # work queues untouched


def test_an_unknown_retention_key_is_refused_with_the_closest_one() -> None:
    with pytest.raises(ConfigError, match=r"unknown key retention\.dayz; did you mean days"):
        load_settings(KitSettings, env={"FLEET_RETENTION__DAYZ": "9"})
    with pytest.raises(ConfigError, match=r"retention\.days"):
        load_settings(KitSettings, env={"FLEET_RETENTION__DAYS": "0"})


async def test_a_service_creates_the_streams_with_the_configured_retention(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    settings = load_settings(
        KitSettings,
        env={"FLEET_RETENTION__DAYS": "10", "FLEET_RETENTION__ROLLUP_DAYS": "40"},
        overrides={"store": {"dir": str(tmp_path)}, "stop_deadline_s": 0.5},
    )
    svc = Plain(settings, nats_url=nats_url)
    await svc.start()
    try:
        js = nc.jetstream()
        events = await js.stream_info("FLEET_EVENTS")
        rollup = await js.stream_info("FLEET_ROLLUP")
        assert events.config.max_age == pytest.approx(10 * DAY_S)
        assert rollup.config.max_age == pytest.approx(40 * DAY_S)
    finally:
        await svc.stop()


def test_metrics_roll_up_into_one_message_a_minute_per_pool() -> None:
    t0 = 1_800_000_000.0  # a minute boundary
    minutes: dict = {}
    done = []
    for i, (ready, inflight) in enumerate([(2, 4.0), (3, 8.0), (4, 12.0)]):
        m = PoolMetrics(pool="a", ts=t0 + i * 20, units_ready=ready, inflight=inflight)
        minutes, out = fold(minutes, m)
        assert out is None
    minutes, _ = fold(minutes, PoolMetrics(pool="b", ts=t0 + 5, units_ready=1))
    minutes, out = fold(minutes, PoolMetrics(pool="a", ts=t0 + 61, units_ready=9, queue_depth=2))
    assert out is not None
    done.append(out)
    first = done[0]
    assert (first.pool, first.ts, first.samples) == ("a", t0, 3)
    assert first.units_ready == 3.0 and (first.units_ready_min, first.units_ready_max) == (2, 4)
    assert first.demand == 8.0 and first.demand_max == 12.0
    minutes, last = forget(minutes, "b")
    assert last is not None and last.pool == "b" and last.units_ready == 1.0
    assert set(minutes) == {"a"}
