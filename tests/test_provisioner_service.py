"""The provisioner on a real nats-server with the simulated marketplace: approved
commands become units, scale-down drains the idlest, faults are retried, failing
providers are failed over, failed units are replaced through the cost-guard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nats.aio.client import Client

from contracts import subjects
from contracts.commands import ProvisionRequest, ReleaseRequest
from contracts.events import Alert, UnitEvent
from contracts.telemetry import UnitTelemetry
from services.kit.service import encode
from services.provisioner.service import ProvisionerService
from tests.provisioner_helpers import Watch, alerts, approve, eventually, settings, states
from tests.signing_helpers import WATCHER, publish_event

POOL = {"gpu": {"gpu_model": "H100", "providers": ["sim"], "drain_deadline_s": 30}}


async def request(nc: Client, op: str, body: dict | None = None) -> dict:
    reply = await nc.request(subjects.api(op), json.dumps(body or {}).encode(), timeout=10)
    return json.loads(reply.data)


async def test_provision_boots_units_and_release_drains_the_idlest(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    svc = ProvisionerService(settings(tmp_path, POOL), nats_url=nats_url)
    await svc.start()
    events = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    try:
        cmd = ProvisionRequest(id="prov-1", requester="scaler", pool="gpu", count=3)
        await approve(nc, cmd)
        seen = await events.until(lambda ev: len(states(ev, "ready")) == 3)
        units = states(seen, "ready")
        assert states(seen, "booting") == units == states(seen, "requested")
        ready = [e for e in seen if e.state == "ready"]
        assert {e.provider for e in ready} == {"sim"} and {e.gpu_model for e in ready} == {"H100"}
        assert all(e.usd_per_hour > 0 and e.command_id == "prov-1" for e in ready)

        # the same command delivered again (a cost-guard retry) creates nothing new
        await approve(nc, cmd, msg_id="prov-1-again")
        listed = await request(nc, "units.list", {"pool": "gpu", "state": "ready"})
        assert listed["count"] == 3

        idle, *busy = sorted(units)
        for name in busy:
            beat = UnitTelemetry(pool="gpu", unit=name, provider="sim", inflight=2, capacity=4)
            await nc.publish(subjects.telemetry("gpu", name), encode(beat))
        beat = UnitTelemetry(pool="gpu", unit=idle, provider="sim", inflight=0, idle_s=300)
        await nc.publish(subjects.telemetry("gpu", idle), encode(beat))
        await nc.flush()
        await eventually(lambda: all(n in svc.loads for n in units), 5)

        await approve(nc, ReleaseRequest(id="rel-1", requester="scaler", pool="gpu", count=1))
        seen = await events.until(lambda ev: idle in states(ev, "terminated"))
        assert states(seen, "draining") == {idle}
        assert states(seen, "terminated") == {idle}
        listed = await request(nc, "units.list", {"pool": "gpu"})
        by_state = {u["unit"]: u["state"] for u in listed["units"]}
        assert by_state == {idle: "terminated", busy[0]: "ready", busy[1]: "ready"}
        assert svc.metrics.counts["units_created"] == 3
        assert svc.metrics.counts["units_destroyed"] == 1
        assert svc.metrics.counts["commands_applied"] == 2
        assert svc.metrics.counts["commands_duplicate"] == 1
    finally:
        await events.stop()
        await svc.stop()


async def test_pool_converges_with_30_percent_provider_errors(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    cfg = settings(
        tmp_path,
        POOL,
        sim={
            "error_rate": 0.2,
            "rate_limit_rate": 0.05,
            "timeout_rate": 0.05,
            "timeout_s": 0.01,
            "rate_limit_after_s": 0.01,
        },
        retry_attempts=6,
        breaker_failures=20,
    )
    svc = ProvisionerService(cfg, nats_url=nats_url)
    await svc.start()
    events = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    try:
        await approve(
            nc, ProvisionRequest(id="prov-faults", requester="scaler", pool="gpu", count=6)
        )
        await events.until(lambda ev: len(states(ev, "ready")) == 6, 30)
        assert svc.metrics.counts["provider_errors"] > 0
        sim_units = json.loads((tmp_path / "sim-sim.json").read_text())
        assert len(sim_units) == 6  # timed-out creates that happened anyway were reused
    finally:
        await events.stop()
        await svc.stop()


async def test_failover_reaches_the_second_provider_and_opens_the_breaker(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    pools = {"gpu": {"gpu_model": "H100", "providers": ["sim", "sim2"]}}
    providers = {"sim": {"error_rate": 1.0}, "sim2": {"kind": "sim", "price_factor": 1.2}}
    cfg = settings(tmp_path, pools, providers, retry_attempts=2, breaker_failures=3)
    svc = ProvisionerService(cfg, nats_url=nats_url)
    await svc.start()
    events = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    alert_watch = await Watch(Alert).start(nc, subjects.ALERT_ALL)
    try:
        await approve(nc, ProvisionRequest(id="prov-fo", requester="scaler", pool="gpu", count=2))
        seen = await events.until(lambda ev: len(states(ev, "ready")) == 2)
        assert {e.provider for e in seen if e.state == "ready"} == {"sim2"}
        opened = await alert_watch.until(lambda a: bool(alerts(a, "breaker_opened")))
        assert "sim" in alerts(opened, "breaker_opened")[0].message

        offers = await request(nc, "gpus.available", {"gpu_model": "H100"})
        assert {o["provider"] for o in offers["offers"]} == {"sim2"}
        assert offers["providers"]["sim"] == "open"
        assert offers["offers"][0]["vram_gb"] == 80 and offers["offers"][0]["vendor"] == "NVIDIA"
        placed = await request(nc, "place", {"min_vram_gb": 40, "vendor": "NVIDIA"})
        assert placed["ok"] and placed["offer"]["provider"] == "sim2"
        assert placed["offer"]["usd_per_hour"] == min(
            o["usd_per_hour"]
            for o in (await request(nc, "gpus.available", {"min_vram_gb": 40, "vendor": "NVIDIA"}))[
                "offers"
            ]
        )
    finally:
        await events.stop()
        await alert_watch.stop()
        await svc.stop()


async def test_failed_unit_is_replaced_through_the_costguard(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    pools = {"gpu": {"gpu_model": "H100", "providers": ["sim", "sim2"]}}
    svc = ProvisionerService(
        settings(tmp_path, pools, {"sim2": {"kind": "sim"}}), nats_url=nats_url
    )
    await svc.start()
    events = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    alert_watch = await Watch(Alert).start(nc, subjects.ALERT_ALL)
    asks = await Watch(ProvisionRequest).start(nc, subjects.PROVISION_REQUESTED)
    try:
        await approve(nc, ProvisionRequest(id="prov-r", requester="scaler", pool="gpu", count=1))
        seen = await events.until(lambda ev: len(states(ev, "ready")) == 1)
        (unit,) = states(seen, "ready")
        # the watcher's verdict after three failed health checks
        failed = UnitEvent(
            pool="gpu", unit=unit, state="failed", provider="sim", reason="3 health checks failed"
        )
        await publish_event(nc, failed, WATCHER)
        (ask,) = await asks.until(lambda a: len(a) == 1)
        assert ask.requester == "provisioner" and ask.pool == "gpu" and ask.count == 1
        assert ask.provider == "sim2" and ask.gpu_model == "H100" and unit in ask.reason
        got = await alert_watch.until(lambda a: bool(alerts(a, "unit_failed")))
        assert unit in alerts(got, "unit_failed")[0].message
        sim_units = json.loads((tmp_path / "sim-sim.json").read_text())
        assert sim_units == []  # the broken unit was destroyed
    finally:
        for w in (events, alert_watch, asks):
            await w.stop()
        await svc.stop()


async def test_idle_units_are_offered_for_release_not_destroyed(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    # min 0: the pool may release its last unit (the default, 1, keeps one warm)
    pools = {"gpu": {"gpu_model": "H100", "providers": ["sim"], "idle_cleanup_s": 60, "min": 0}}
    svc = ProvisionerService(settings(tmp_path, pools, cleanup_check_s=0.2), nats_url=nats_url)
    await svc.start()
    events = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    asks = await Watch(ReleaseRequest).start(nc, subjects.RELEASE_REQUESTED)
    try:
        await approve(nc, ProvisionRequest(id="prov-i", requester="scaler", pool="gpu", count=1))
        (unit,) = states(await events.until(lambda ev: len(states(ev, "ready")) == 1), "ready")
        beat = UnitTelemetry(pool="gpu", unit=unit, provider="sim", idle_s=3600)
        await nc.publish(subjects.telemetry("gpu", unit), encode(beat))
        (ask,) = await asks.until(lambda a: len(a) >= 1)
        assert ask.requester == "provisioner" and ask.unit == unit and "idle" in ask.reason
        assert "terminated" not in {e.state for e in events.items}
    finally:
        await events.stop()
        await asks.stop()
        await svc.stop()


async def test_sim_units_beat_with_the_pools_load_shared_among_them(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    pools = {"gpu": {"gpu_model": "H100", "providers": ["sim"], "unit_capacity": 4}}
    load = {"gpu": {"base": 10, "peak": 10, "period_s": 600, "service_s": 2.0}}
    cfg = settings(tmp_path, pools, sim={"telemetry_interval_s": 0.1, "load": load})
    svc = ProvisionerService(cfg, nats_url=nats_url)
    await svc.start()
    events = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    beats = await Watch(UnitTelemetry).start(nc, "fleet.telemetry.gpu.>")
    try:
        await approve(nc, ProvisionRequest(id="prov-load", requester="scaler", pool="gpu", count=2))
        units = states(await events.until(lambda ev: len(states(ev, "ready")) == 2), "ready")

        def both_loaded(items: list[UnitTelemetry]) -> bool:
            return {b.unit for b in items if b.queue_depth > 0} == units

        got = await beats.until(both_loaded)
        last = {b.unit: b for b in got}
        # demand 10 over two units of capacity 4: each serves 4 and queues 1
        assert all(b.inflight == 4 and b.queue_depth == 1 for b in last.values())
        assert all(b.utilization == 1.0 and b.provider == "sim" for b in last.values())
        # 4 requests of 2 s each per unit: 2 complete per second, 0.2 per 0.1 s beat
        assert all(b.completed == pytest.approx(0.2) for b in last.values())
    finally:
        await events.stop()
        await beats.stop()
        await svc.stop()
