"""The scaler service over a real nats-server: metrics in, proposals and audit records
out, state and learned lead times kept across a restart, stale backlog skipped."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from contracts import subjects
from contracts.commands import ScaleProposal
from contracts.events import AuditRecord, UnitEvent
from contracts.telemetry import PoolMetrics, UnitTelemetry
from services.kit.config import ConfigError, load_settings
from services.kit.service import encode
from services.scaler.service import Scaler, ScalerSettings
from services.watcher.service import Watcher
from services.watcher.settings import WatcherSettings

POOL = {"min": 1, "max": 10, "unit_capacity": 4, "target_utilization": 0.5, "gpu_model": "H100"}


def scaler_settings(tmp_path: Path, **extra: Any) -> ScalerSettings:
    overrides: dict[str, Any] = {
        "store": {"dir": str(tmp_path / "scaler")},
        "stop_deadline_s": 0.5,
        "pools": {"gpu": POOL},
        **extra,
    }
    return load_settings(ScalerSettings, env={}, overrides=overrides)


def metrics(pool: str = "gpu", **kw: Any) -> PoolMetrics:
    return PoolMetrics(pool=pool, ts=kw.pop("ts", time.time()), **kw)


def unit_event(state: str, ts: float) -> UnitEvent:
    return UnitEvent(pool="gpu", unit="n1", state=state, ts=ts)  # type: ignore[arg-type]


async def next_of(sub: Any, kind: type, wait_s: float = 5.0) -> Any:
    return msgspec.json.decode((await sub.next_msg(wait_s)).data, type=kind)


async def _until(cond: Callable[[], bool]) -> None:
    """Return once a service's counter says so (callers bound it with a timeout)."""
    while not cond():  # noqa: ASYNC110 (a counter has no event to wait on)
        await asyncio.sleep(0.01)


async def test_telemetry_through_the_watcher_becomes_a_scale_proposal(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    watcher = Watcher(
        load_settings(
            WatcherSettings,
            env={},
            overrides={
                "store": {"dir": str(tmp_path / "watcher")},
                "stop_deadline_s": 0.5,
                "watcher": {"tick_s": 0.1, "window_s": 0.1},
            },
        ),
        nats_url=nats_url,
    )
    scaler = Scaler(scaler_settings(tmp_path), nats_url=nats_url)
    await scaler.start()
    await watcher.start()
    try:
        proposals = await nc.subscribe(subjects.SCALE_PROPOSED_ALL)
        audits = await nc.subscribe("fleet.audit.scaler")
        for unit in ("a", "b"):  # two full units: 8 in flight needs 4 at 50 % of 4
            t = UnitTelemetry(pool="gpu", unit=unit, inflight=4, capacity=4, utilization=1.0)
            await nc.publish(subjects.telemetry("gpu", unit), encode(t))
        # A tick may fall between the two heartbeats: wait for the one that saw both,
        # and for the short window to hold only such ticks (it judges the step).
        proposal: ScaleProposal = await next_of(proposals, ScaleProposal)
        while proposal.current < 2 or proposal.desired < 4:
            proposal = await next_of(proposals, ScaleProposal)
        assert (proposal.pool, proposal.current, proposal.desired) == ("gpu", 2, 4)
        assert proposal.id.startswith("scale:gpu:") and "2 -> 4" in proposal.reason
        audit: AuditRecord = await next_of(audits, AuditRecord)
        while audit.refs["proposal"] != proposal.id:
            audit = await next_of(audits, AuditRecord)
        assert audit.actor == "scaler" and audit.reasoning == proposal.reason
        # `fleet status` reads what the scaler wants from fleet.api.scaling.
        wants = json.loads((await nc.request("fleet.api.scaling", b"{}", timeout=5)).data)
        assert wants["pools"]["gpu"]["desired"] >= 4
        await proposals.unsubscribe()
        await audits.unsubscribe()
    finally:
        await watcher.stop()
        await scaler.stop()


async def test_unconfigured_pools_use_the_default_policy(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    scaler = Scaler(
        scaler_settings(tmp_path, scaler={"default_policy": {"unit_capacity": 10, "min": 2}}),
        nats_url=nats_url,
    )
    await scaler.start()
    try:
        assert scaler.policy_for("gpu").unit_capacity == 4  # the pool's own key wins
        assert scaler.policy_for("gpu").target_utilization == 0.5
        proposals = await nc.subscribe("fleet.scale.proposed.other")
        await nc.jetstream().publish("fleet.metrics.other", encode(metrics("other")))
        proposal: ScaleProposal = await next_of(proposals, ScaleProposal)
        assert (proposal.current, proposal.desired) == (0, 2)  # silence scales to min
        await proposals.unsubscribe()
    finally:
        await scaler.stop()


async def test_a_restarted_scaler_keeps_its_history_and_learned_lead_time(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    js = nc.jetstream()
    proposals = await nc.subscribe("fleet.scale.proposed.gpu")
    first = Scaler(scaler_settings(tmp_path), nats_url=nats_url)
    await first.start()
    try:
        t0 = time.time() - 50
        await js.publish(
            "fleet.unit.gpu.n1", encode(UnitEvent(pool="gpu", unit="n1", state="requested", ts=t0))
        )
        await js.publish(
            "fleet.unit.gpu.n1", encode(UnitEvent(pool="gpu", unit="n1", state="ready", ts=t0 + 42))
        )
        await asyncio.wait_for(_until(lambda: first.metrics.counts["lead_times_learned"] == 1), 5)
        await js.publish("fleet.metrics.gpu", encode(metrics(units_ready=2, inflight=8)))
        p1: ScaleProposal = await next_of(proposals, ScaleProposal)
        assert p1.id == "scale:gpu:1" and p1.desired == 4
    finally:
        await first.stop()

    second = Scaler(scaler_settings(tmp_path), nats_url=nats_url)
    await second.start()
    try:
        state, _ = second.state_for("gpu")
        assert state.seq == 1 and state.learned_lead_s == pytest.approx(42)
        # The same ready event again (a redelivery) does not count twice.
        await js.publish(
            "fleet.unit.gpu.n1",
            encode(UnitEvent(pool="gpu", unit="n1", state="ready", ts=time.time())),
        )
        await js.publish("fleet.metrics.gpu", encode(metrics(units_ready=2, inflight=12)))
        p2: ScaleProposal = await next_of(proposals, ScaleProposal)
        assert p2.id == "scale:gpu:2" and p2.desired == 6  # numbering carries on
        assert second.state_for("gpu")[0].learned_lead_s == pytest.approx(42)
        await proposals.unsubscribe()
    finally:
        await second.stop()


async def test_the_forecast_is_kept_across_a_restart_and_written_when_it_changes(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    # Ten minutes of metrics, one every 5 s: the forecaster closes a bucket a minute.
    settings = scaler_settings(tmp_path, scaler={"stale_after_s": 3600})
    first = Scaler(settings, nats_url=nats_url)
    await first.start()
    js = nc.jetstream()
    t0 = time.time() - 600
    n = 120
    try:
        for i in range(n):
            m = metrics(units_ready=3, inflight=6.0 + (i % 7), ts=t0 + 5 * i)
            await js.publish("fleet.metrics.gpu", encode(m))
        await asyncio.wait_for(_until(lambda: first.metrics.counts["decisions"] == n), 10)
        kept, _ = first.state_for("gpu")
        assert kept.forecast.buckets >= 9 and kept.forecast.profile
        # The profile and the kept errors change at most once a minute, and are
        # stored then, not at each of the 120 decisions.
        writes = first.metrics.counts["history_writes"]
        assert 1 <= writes <= 2 * 11
    finally:
        await first.stop()

    second = Scaler(settings, nats_url=nats_url)
    await second.start()
    try:
        assert second.state_for("gpu")[0] == kept
    finally:
        await second.stop()


async def test_stale_metrics_after_a_backlog_are_skipped(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    scaler = Scaler(scaler_settings(tmp_path), nats_url=nats_url)
    await scaler.start()
    try:
        js = nc.jetstream()
        old = metrics(units_ready=1, inflight=40, ts=time.time() - 60)
        await js.publish("fleet.metrics.gpu", encode(old))
        fresh = metrics(units_ready=1, inflight=2)
        await js.publish("fleet.metrics.gpu", encode(fresh))
        await js.publish("fleet.metrics.gpu", encode(fresh))  # a duplicate: decided once
        await asyncio.wait_for(_until(lambda: scaler.metrics.counts["metrics_duplicate"] == 1), 5)
        assert scaler.metrics.counts["metrics_stale"] == 1
        assert scaler.metrics.counts["decisions"] == 1
        assert scaler.metrics.counts["proposals"] == 0  # 2 in flight: one unit is enough
    finally:
        await scaler.stop()


@pytest.mark.parametrize(
    ("pool", "why"),
    [
        ({"min": 5, "max": 2}, "min=5 and max=2"),
        ({"unit_capacity": 0}, "unit_capacity=0"),
        ({"max": "many"}, "pools.gpu"),
    ],
)
def test_a_bad_pool_policy_fails_at_start_naming_the_pool(
    tmp_path: Path, pool: dict[str, Any], why: str
) -> None:
    with pytest.raises(ConfigError, match=why):
        scaler_settings(tmp_path, pools={"gpu": pool})


def test_a_pool_table_does_not_inherit_the_default_policy(tmp_path: Path) -> None:
    # A configured pool means the same to every service: its own keys and PoolConfig's
    # defaults, not a scaler-only base (the provisioner and cost-guard never see it).
    s = scaler_settings(tmp_path, pools={"gpu": {"max": 10}}, scaler={"default_policy": {"min": 5}})
    scaler = Scaler(s)
    assert (scaler.policy_for("gpu").min, scaler.policy_for("gpu").max) == (1, 10)
    assert scaler.policy_for("unconfigured").min == 5


def test_a_misspelt_pool_key_fails_naming_it_and_the_closest_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key pools\.gpu\.mni; did you mean min\?"):
        scaler_settings(tmp_path, pools={"gpu": {"mni": 2}})
