"""The `local` provider: real worker processes that beat and answer pings, killed on
release and on shutdown, with no process left behind."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from nats.aio.client import Client

from contracts import subjects
from contracts.commands import ProvisionRequest, ReleaseRequest
from contracts.events import UnitEvent
from contracts.telemetry import UnitTelemetry
from services.provisioner.service import ProvisionerService
from tests.provisioner_helpers import Watch, approve, eventually, settings, states

POOLS = {"cpu": {"gpu_model": "CPU", "providers": ["local"]}}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


async def test_local_workers_beat_answer_and_are_killed_on_release_and_stop(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    svc = ProvisionerService(settings(tmp_path, POOLS), nats_url=nats_url)
    await svc.start()
    events = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    beats = await Watch(UnitTelemetry).start(nc, "fleet.telemetry.cpu.>")
    pids: list[int] = []
    try:
        await approve(nc, ProvisionRequest(id="loc-1", requester="op", pool="cpu", count=2))
        seen = await events.until(lambda ev: len(states(ev, "ready")) == 2, 30)
        first, second = sorted(states(seen, "ready"))
        local = svc.providers.get("local")
        pids = list(local.pids().values())  # type: ignore[union-attr]
        assert len(pids) == 2 and all(alive(p) for p in pids)

        got = await beats.until(lambda b: {x.unit for x in b} >= {first, second}, 10)
        assert {b.provider for b in got} == {"local"}
        pong = json.loads((await nc.request(subjects.unit_ping(first), b"", timeout=5)).data)
        assert pong["unit"] == first and pong["pid"] in pids

        await approve(nc, ReleaseRequest(id="loc-rel", requester="op", pool="cpu", unit=first))
        await events.until(lambda ev: first in states(ev, "terminated"), 15)
        first_pid = pong["pid"]
        assert not alive(first_pid)
        assert [p for p in pids if alive(p)] == [p for p in pids if p != first_pid]
    finally:
        await beats.stop()
        await svc.stop()
    assert pids and not any(alive(p) for p in pids)
    assert second in states(events.items, "terminated")  # stopped units are not left "ready"
    await events.stop()
    state = json.loads((tmp_path / "local-local.json").read_text())
    assert state == []


async def test_a_worker_that_dies_is_marked_failed_and_replaced(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    svc = ProvisionerService(settings(tmp_path, POOLS), nats_url=nats_url)
    await svc.start()
    events = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    asks = await Watch(ProvisionRequest).start(nc, subjects.PROVISION_REQUESTED)
    try:
        await approve(nc, ProvisionRequest(id="loc-2", requester="op", pool="cpu", count=1))
        (unit,) = states(await events.until(lambda ev: len(states(ev, "ready")) == 1, 30), "ready")
        local = svc.providers.get("local")
        (pid,) = local.pids().values()  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)
        await events.until(lambda ev: unit in states(ev, "failed"), 15)
        (ask,) = await asks.until(lambda a: len(a) == 1)
        assert ask.provider == "local" and ask.requester == "provisioner"
        await eventually(lambda: not alive(pid), 5)
    finally:
        await events.stop()
        await asks.stop()
        await svc.stop()


async def test_a_pinned_unit_the_stop_ended_is_asked_for_again_and_keeps_its_pin(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    """A hosted agent's own runner (or any pinned `local` unit) ends when `fleet up`
    stops; the next provisioner asks the cost-guard for it again, and the new unit is
    pinned as the old one was. An unpinned unit is left to the scaler."""
    svc = ProvisionerService(settings(tmp_path, POOLS), nats_url=nats_url)
    await svc.start()
    events = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    asks = await Watch(ProvisionRequest).start(nc, subjects.PROVISION_REQUESTED)
    try:
        pinned = ProvisionRequest(id="loc-pin", requester="op", pool="cpu", count=1, pin=True)
        await approve(nc, pinned)
        (kept,) = states(await events.until(lambda ev: len(states(ev, "ready")) == 1, 30), "ready")
        await approve(nc, ProvisionRequest(id="loc-free", requester="op", pool="cpu", count=1))
        await events.until(lambda ev: len(states(ev, "ready")) == 2, 30)
        await svc.stop()
        await events.until(lambda ev: len(states(ev, "terminated")) == 2, 10)
        assert asks.items == []

        svc = ProvisionerService(settings(tmp_path, POOLS), nats_url=nats_url)
        await svc.start()
        (ask,) = await asks.until(lambda a: len(a) == 1, 15)
        assert (ask.replaces, ask.provider, ask.pool) == (kept, "local", "cpu")
        await approve(nc, ask, msg_id=f"verdict-{ask.id}")  # the request took its id
        ready = await events.until(lambda ev: len(states(ev, "ready")) == 3, 30)
        (new,) = set(states(ready, "ready")) - {kept} - set(states(ready, "terminated"))
        unit = svc.life.inventory.get(new)
        assert unit is not None and unit.pinned
        assert len(asks.items) == 1  # the unpinned unit is not asked for again
    finally:
        await events.stop()
        await asks.stop()
        await svc.stop()
