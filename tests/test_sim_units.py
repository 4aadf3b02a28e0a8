"""Sim units report from a process of their own, so a provisioner restart never fails
healthy units: they keep their heartbeats while the provisioner is down for longer than
the watcher's heartbeat timeout, and the restarted provisioner finds them ready. The
units' host is one per state directory, and stops once no provisioner has been alive for
`[sim] orphan_s`."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

from nats.aio.client import Client

from contracts import subjects
from contracts.commands import ProvisionRequest
from contracts.events import UnitEvent
from contracts.telemetry import UnitTelemetry
from services.kit.config import load_settings
from services.provisioner.providers.simhost import SimHost, running, stop_host
from services.provisioner.service import ProvisionerService
from services.watcher.service import Watcher
from services.watcher.settings import WatcherSettings
from tests.provisioner_helpers import Watch, approve, eventually, settings, states
from tests.test_provisioner_restart import start, wait_ready

HEARTBEAT_TIMEOUT_S = 2.0
CONFIG = """
[pools.gpu]
gpu_model = "H100"
providers = ["sim"]

[sim]
seed = 3
boot_delay_s = [0.2, 0.2]
telemetry_interval_s = 0.2

[provisioner]
boot_poll_s = 0.2
reconcile_interval_s = 1
"""


async def test_units_keep_reporting_while_the_provisioner_is_killed_and_restarted(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    (tmp_path / "fleet.toml").write_text(CONFIG)
    watcher = Watcher(
        load_settings(
            WatcherSettings,
            env={},
            overrides={
                "store": {"dir": str(tmp_path / "watcher")},
                "stop_deadline_s": 0.5,
                "watcher": {"tick_s": 0.2, "heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S},
            },
        ),
        nats_url=nats_url,
    )
    events = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    beats = await Watch(UnitTelemetry).start(nc, subjects.TELEMETRY_ALL)
    asks = await Watch(ProvisionRequest).start(nc, subjects.PROVISION_REQUESTED)
    await watcher.start()
    proc = start(tmp_path, nats_url)
    try:
        await wait_ready(nc, proc, tmp_path)
        await approve(nc, ProvisionRequest(id="steady", requester="scaler", pool="gpu", count=3))
        seen = await events.until(lambda ev: len(states(ev, "ready")) == 3, 20)
        units = states(seen, "ready")

        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed = time.time()

        def reported_since(items: list[UnitTelemetry], after: float) -> set[str]:
            return {b.unit for b in items if b.ts > after}

        # Down for longer than the watcher waits for a heartbeat, and every unit still
        # reports all along: its heartbeats do not come from the provisioner.
        quiet_for = killed + 2 * HEARTBEAT_TIMEOUT_S
        await beats.until(lambda b: reported_since(b, quiet_for) == units, 20)
        proc = start(tmp_path, nats_url)
        await wait_ready(nc, proc, tmp_path)
        restarted = time.time()
        await beats.until(lambda b: reported_since(b, restarted + 1) == units, 20)
        assert states(events.items, "failed") == set(), "a healthy unit was declared failed"
        assert asks.items == [], "a replacement was asked for a healthy unit"
        reply = await nc.request(subjects.api("units.list"), b'{"pool": "gpu"}', timeout=5)
        assert {u["unit"]: u["state"] for u in json.loads(reply.data)["units"]} == dict.fromkeys(
            units, "ready"
        )
    finally:
        for w in (events, beats, asks):
            await w.stop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
        await watcher.stop()
        assert await asyncio.to_thread(stop_host, tmp_path / "store")


async def test_the_units_host_is_one_per_directory_and_stops_when_orphaned(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    sim = {"units": "process", "telemetry_interval_s": 0.2, "orphan_s": 1.0}
    pools = {"gpu": {"gpu_model": "H100", "providers": ["sim"]}}
    svc = ProvisionerService(settings(store, pools, sim=sim), nats_url=nats_url)
    beats = await Watch(UnitTelemetry).start(nc, subjects.TELEMETRY_ALL)
    await svc.start()
    host = svc.providers.get("sim").world.host  # type: ignore[union-attr]
    assert isinstance(host, SimHost)
    try:
        await approve(nc, ProvisionRequest(id="one", requester="scaler", pool="gpu", count=1))
        await beats.until(lambda b: len(b) >= 3, 20)  # the host runs and reports
        other = SimHost(store, nats_url, sim, {}, ["sim"])  # as a second provisioner's
        other.ensure()
        assert other.proc is None and running(store), "a second host was started"
        await svc.stop()
        assert running(store), "a graceful stop silenced the units"
        await eventually(lambda: not running(store), 15)  # orphaned: it stops on its own
    finally:
        await beats.stop()
        await svc.stop()
        await asyncio.to_thread(host.stop)
