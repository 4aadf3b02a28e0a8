"""The watcher as an operator sees it: telemetry becomes pool metrics, silent or sick
units are declared failed once, nonsense telemetry is dead-lettered, and a
Prometheus query can feed a pool's demand."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from contracts import subjects
from contracts.events import Alert, DeadLetter, UnitEvent
from contracts.telemetry import PoolMetrics, UnitTelemetry
from services.kit.config import ConfigError, load_settings
from services.kit.service import encode
from services.watcher.prometheus import PrometheusError, parse_response
from services.watcher.service import Watcher
from services.watcher.settings import WatcherSettings
from services.watcher.units import (
    UnitTable,
    apply_event,
    check_telemetry,
    failures,
    ingest,
    mark_failed,
    unit_key,
)
from services.watcher.windows import PoolWindow, aggregate
from tests.fakes.prometheus import PrometheusFake


def tel(pool: str = "p", unit: str = "u1", **kw: Any) -> UnitTelemetry:
    return UnitTelemetry(pool=pool, unit=unit, **kw)


def feed(table: UnitTable, t: UnitTelemetry, now: float) -> None:
    ingest(table, unit_key(t.pool, t.unit), t, now)


# -- pure logic ------------------------------------------------------------------------


def test_pool_metrics_sum_fresh_healthy_units_and_count_pending_ones() -> None:
    table = UnitTable()
    feed(table, tel(unit="a", inflight=3, capacity=4, queue_depth=1), 100.0)
    feed(table, tel(unit="b", inflight=1, capacity=4), 100.0)
    feed(table, tel(unit="sick", inflight=2, capacity=4, healthy=False), 100.0)
    feed(table, tel(pool="q", unit="c", inflight=5, capacity=8), 100.0)
    apply_event(table, UnitEvent(pool="p", unit="new", state="booting"), 100.0)
    apply_event(table, UnitEvent(pool="p", unit="gone", state="terminated"), 100.0)

    samples = aggregate(table, 101.0, 1.0, fresh_s=10.0)
    window = PoolWindow()
    window.add(samples["p"], 3.0)
    m = window.metrics("p")
    assert (m.units_ready, m.units_pending) == (2, 1)
    assert m.inflight == 6  # the sick unit's requests still count as demand
    assert m.capacity == 8 and m.queue_depth == 1
    assert m.utilization == pytest.approx(0.75)
    assert samples["q"].ready == 1 and samples["q"].inflight == 5


def test_demand_is_averaged_over_the_window_and_old_ticks_leave_it() -> None:
    window = PoolWindow()
    for i, inflight in enumerate([10.0, 20.0, 30.0, 40.0]):
        table = UnitTable()
        feed(table, tel(inflight=inflight, capacity=100), float(i))
        window.add(aggregate(table, float(i), 1.0, 10.0)["p"], window_s=3.0)
    m = window.metrics("p")
    assert m.inflight == pytest.approx(30.0)  # ticks 1..3; tick 0 left the 3 s window
    assert m.window_s == pytest.approx(3.0)


def test_arrival_rate_is_completions_plus_growth_over_the_window() -> None:
    table = UnitTable()
    window = PoolWindow()
    feed(table, tel(inflight=2, capacity=10), 0.0)
    window.add(aggregate(table, 0.0, 1.0, 10.0)["p"], 10.0)
    # 5 finished and in-flight grew by 3: 8 arrived during the next second
    feed(table, tel(inflight=5, capacity=10, completed=5), 1.0)
    window.add(aggregate(table, 1.0, 1.0, 10.0)["p"], 10.0)
    # 4 finished, in-flight fell by 4: nothing arrived
    feed(table, tel(inflight=1, capacity=10, completed=4), 2.0)
    window.add(aggregate(table, 2.0, 1.0, 10.0)["p"], 10.0)
    assert window.metrics("p").arrival_rate == pytest.approx(8 / 3)


def test_silent_unit_fails_once_after_the_heartbeat_timeout() -> None:
    table = UnitTable()
    feed(table, tel(unit="talker"), 100.0)
    feed(table, tel(unit="quiet"), 100.0)
    feed(table, tel(unit="talker"), 109.0)
    assert failures(table, 109.9, 10.0, 3) == []
    [f] = failures(table, 110.0, 10.0, 3)
    assert (f.unit, f.pool) == ("quiet", "p")
    assert "last heartbeat for 10.0 s" in f.reason
    mark_failed(table, [f], 110.0)
    assert [x.unit for x in failures(table, 200.0, 10.0, 3)] == ["talker"]
    feed(table, tel(unit="quiet"), 201.0)  # a late heartbeat does not revive it
    assert aggregate(table, 201.0, 1.0, 10.0)["p"].ready == 0


def test_only_units_that_spoke_or_are_ready_are_expected_to_heartbeat() -> None:
    table = UnitTable()
    apply_event(table, UnitEvent(pool="p", unit="booting", state="booting"), 0.0)
    apply_event(table, UnitEvent(pool="p", unit="up", state="ready"), 0.0)
    [f] = failures(table, 60.0, 10.0, 3)
    assert f.unit == "up" and "no heartbeat" in f.reason


def test_three_unhealthy_reports_in_a_row_fail_a_unit_but_a_healthy_one_resets() -> None:
    table = UnitTable()
    for healthy in (False, False, True, False, False):
        feed(table, tel(healthy=healthy), 1.0)
    assert failures(table, 1.0, 10.0, 3) == []
    feed(table, tel(healthy=False), 1.0)
    [f] = failures(table, 1.0, 10.0, 3)
    assert "unhealthy 3 times in a row" in f.reason


def test_ended_units_disappear_and_a_new_request_revives_the_id() -> None:
    table = UnitTable()
    feed(table, tel(unit="a", capacity=4), 0.0)
    apply_event(table, UnitEvent(pool="p", unit="a", state="terminated", ts=1.0), 1.0)
    assert aggregate(table, 1.0, 1.0, 10.0)["p"].ready == 0
    assert failures(table, 100.0, 10.0, 3) == []
    apply_event(table, UnitEvent(pool="p", unit="a", state="requested", ts=2.0), 2.0)
    assert aggregate(table, 2.0, 1.0, 10.0)["p"].pending == 1


@pytest.mark.parametrize(
    ("t", "subject", "why"),
    [
        (tel(inflight=500, capacity=4), "fleet.telemetry.p.u1", "over 100 x capacity"),
        (tel(inflight=101, capacity=0), "fleet.telemetry.p.u1", "over 100 x capacity"),
        (tel(queue_depth=1e8, capacity=1), "fleet.telemetry.p.u1", "queue_depth"),
        (tel(), "fleet.telemetry.p.other", "does not match"),
    ],
)
def test_absurd_telemetry_is_rejected_with_the_reason(
    t: UnitTelemetry, subject: str, why: str
) -> None:
    assert why in (check_telemetry(t, subject, 100.0) or "")


def test_plausible_telemetry_passes() -> None:
    assert check_telemetry(tel(inflight=399, capacity=4), "fleet.telemetry.p.u1", 100.0) is None


def test_prometheus_values_are_strings_and_non_finite_ones_are_ignored() -> None:
    body = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {}, "value": [1.0, "4.5"]},
                {"metric": {}, "value": [1.0, "NaN"]},
                {"metric": {}, "value": [1.0, "+Inf"]},
                {"metric": {}, "value": [1.0, "-3"]},
                {"metric": {}, "value": [1.0, "2"]},
            ],
        },
    }
    assert parse_response(body) == 6.5
    with pytest.raises(PrometheusError, match="parse error"):
        parse_response({"status": "error", "errorType": "bad_data", "error": "parse error"})
    with pytest.raises(PrometheusError, match="matrix"):
        parse_response({"status": "success", "data": {"resultType": "matrix", "result": []}})


def test_bad_settings_fail_with_the_key_name() -> None:
    with pytest.raises(ConfigError, match=r"watcher\.tick_s"):
        load_settings(WatcherSettings, env={}, overrides={"watcher": {"tick_s": 0}})


# -- over a real nats-server ---------------------------------------------------------------


def settings_for(tmp_path: Path, **watcher: Any) -> WatcherSettings:
    opts: dict[str, Any] = {"tick_s": 0.1, "window_s": 0.1, **watcher}
    return load_settings(
        WatcherSettings,
        env={},
        overrides={"store": {"dir": str(tmp_path)}, "stop_deadline_s": 0.5, "watcher": opts},
    )


@pytest.fixture
async def started() -> AsyncIterator[Callable[[Watcher], Any]]:
    running: list[Watcher] = []

    async def start(svc: Watcher) -> Watcher:
        await svc.start()
        running.append(svc)
        return svc

    yield start
    for svc in running:
        await svc.stop()


async def next_matching(sub: Any, kind: type, pred: Callable[[Any], bool], wait_s: float) -> Any:
    """The first message on `sub` that decodes as `kind` and satisfies `pred`."""

    async def scan() -> Any:
        while True:
            msg = await sub.next_msg(wait_s)
            obj = msgspec.json.decode(msg.data, type=kind)
            if pred(obj):
                return obj

    return await asyncio.wait_for(scan(), wait_s)


async def test_telemetry_becomes_pool_metrics_and_the_api_answers(
    nats_url: str, nc: Client, tmp_path: Path, started: Any
) -> None:
    svc = await started(Watcher(settings_for(tmp_path), nats_url=nats_url))
    metrics = await nc.subscribe("fleet.metrics.gpu")
    for unit, inflight in (("a", 3.0), ("b", 5.0)):
        t = tel(pool="gpu", unit=unit, inflight=inflight, capacity=8)
        await nc.publish(subjects.telemetry("gpu", unit), encode(t))
    m = await next_matching(metrics, PoolMetrics, lambda m: m.units_ready == 2, 5)
    assert (m.inflight, m.capacity, m.utilization) == (8.0, 16.0, 0.5)
    assert svc.metrics.counts["telemetry_ingested"] == 2
    await metrics.unsubscribe()

    reply = json.loads((await nc.request("fleet.api.pools", b"{}", timeout=5)).data)
    [pool] = reply["pools"]
    assert pool["metrics"]["pool"] == "gpu" and pool["metrics"]["units_ready"] == 2
    missing = json.loads((await nc.request("fleet.api.pools", b'{"pool":"x"}', timeout=5)).data)
    assert missing["error"]["code"] == 404 and "gpu" in missing["error"]["message"]
    assert svc.metrics.counts["metrics_published"] >= 1


async def test_a_silent_unit_becomes_failed_with_an_alert_once(
    nats_url: str, nc: Client, tmp_path: Path, started: Any
) -> None:
    svc = await started(Watcher(settings_for(tmp_path, heartbeat_timeout_s=0.5), nats_url=nats_url))
    events = await nc.subscribe("fleet.unit.p.>")
    alerts = await nc.subscribe("fleet.alert.>")
    await nc.publish(subjects.telemetry("p", "u1"), encode(tel()))
    failed = await next_matching(events, UnitEvent, lambda e: e.state == "failed", 5)
    alert = await next_matching(alerts, Alert, lambda a: a.kind == "unit_failed", 5)
    assert failed.unit == "u1" and "heartbeat" in failed.reason
    assert alert.unit == "u1" and alert.severity == "warning" and "u1" in alert.message

    # The watcher hears its own event back; the unit is not failed again.
    await asyncio.wait_for(_until(lambda: svc.metrics.counts["unit_events"] >= 1), 5)
    await nc.publish(subjects.telemetry("p", "u1"), encode(tel()))
    await asyncio.wait_for(_until(lambda: svc.metrics.counts["metrics_published"] >= 10), 5)
    assert svc.metrics.counts["units_failed"] == 1
    await events.unsubscribe()
    await alerts.unsubscribe()


async def test_unhealthy_reports_fail_a_unit(
    nats_url: str, nc: Client, tmp_path: Path, started: Any
) -> None:
    await started(Watcher(settings_for(tmp_path), nats_url=nats_url))
    events = await nc.subscribe("fleet.unit.p.>")
    for _ in range(3):
        await nc.publish(subjects.telemetry("p", "u1"), encode(tel(healthy=False)))
    failed = await next_matching(events, UnitEvent, lambda e: e.state == "failed", 5)
    assert "unhealthy 3 times" in failed.reason
    await events.unsubscribe()


async def test_bad_telemetry_is_dead_lettered_and_never_reaches_the_window(
    nats_url: str, nc: Client, tmp_path: Path, started: Any
) -> None:
    svc = await started(Watcher(settings_for(tmp_path), nats_url=nats_url))
    dead = await nc.subscribe("fleet.dead.>")
    metrics = await nc.subscribe("fleet.metrics.p")
    bad = [
        b'{"pool":"p","unit":"u1","inflight":1e400}',
        b'{"pool":"p","unit":"u1","inflight":-1}',
        b'{"pool":"p","unit":"u1","inflight":"NaN"}',
        encode(tel(inflight=10_000, capacity=4)),
        encode(tel(unit="someone-else")),
    ]
    for payload in bad:
        await nc.publish(subjects.telemetry("p", "u1"), payload)
    letters = [msgspec.json.decode((await dead.next_msg(5)).data, type=DeadLetter) for _ in bad]
    assert "100 x capacity" in letters[3].reason
    assert "does not match" in letters[4].reason
    assert svc.metrics.counts["telemetry_rejected"] == 2

    await nc.publish(subjects.telemetry("p", "u1"), encode(tel(inflight=2, capacity=4)))
    m = await next_matching(metrics, PoolMetrics, lambda m: m.units_ready == 1, 5)
    assert m.inflight == 2 and math.isfinite(m.utilization)
    assert svc.state == "ready" and svc.metrics.counts["telemetry_ingested"] == 1
    await dead.unsubscribe()
    await metrics.unsubscribe()


async def test_a_prometheus_query_feeds_a_pools_demand(
    nats_url: str, nc: Client, tmp_path: Path, started: Any
) -> None:
    with PrometheusFake() as prom:
        prom.set("sum(lb_inflight)", ["30", "NaN", "+Inf", "12"])
        prom.fail_next(503)  # the first poll fails; the next one succeeds
        source = {"url": prom.url, "query": "sum(lb_inflight)", "interval_s": 0.1}
        svc = await started(
            Watcher(settings_for(tmp_path, prometheus={"web": source}), nats_url=nats_url)
        )
        metrics = await nc.subscribe("fleet.metrics.web")
        m = await next_matching(metrics, PoolMetrics, lambda m: m.inflight > 0, 5)
        assert m.inflight == 42.0 and m.units_ready == 0
        assert svc.metrics.counts["prometheus_errors"] >= 1
        assert "sum(lb_inflight)" in prom.queries
        await metrics.unsubscribe()


async def test_a_restarted_watcher_remembers_which_units_are_pending(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    js = nc.jetstream()
    first = Watcher(settings_for(tmp_path), nats_url=nats_url)
    await first.start()
    try:
        await js.publish(
            subjects.unit("p", "n1"), encode(UnitEvent(pool="p", unit="n1", state="booting"))
        )
        await asyncio.wait_for(_until(lambda: first.metrics.counts["unit_events"] == 1), 5)
    finally:
        await first.stop()
    second = Watcher(settings_for(tmp_path), nats_url=nats_url)
    await second.start()
    try:
        metrics = await nc.subscribe("fleet.metrics.p")
        m = await next_matching(metrics, PoolMetrics, lambda m: True, 5)
        assert m.units_pending == 1
        assert second.metrics.counts["unit_events"] == 0  # not replayed: read from the store
        await metrics.unsubscribe()
    finally:
        await second.stop()


async def _until(cond: Callable[[], bool]) -> None:
    """Return once a service's counter says so (callers bound it with a timeout)."""
    while not cond():  # noqa: ASYNC110 (a counter has no event to wait on)
        await asyncio.sleep(0.01)
