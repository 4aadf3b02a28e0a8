"""Fencing a command's run by the lease revision of the instance that carries it out.

Two provisioner instances may share a store (compose's volume, a pod restarted on its
claim). The one that takes a command over stamps it with its fencing token, the lease
revision at which it took the lease; a run stamped with a lower token stops before its
next provider call, even in an instance that has not yet noticed it lost the lease
(a long pause), and can no longer mark the command finished."""

from __future__ import annotations

from pathlib import Path

from nats.aio.client import Client

from contracts import subjects
from contracts.commands import ProvisionRequest
from contracts.events import AuditRecord, UnitEvent
from services.kit.store import Store
from services.provisioner.service import ProvisionerService
from services.provisioner.unitstore import MIGRATIONS, Inventory
from tests.provisioner_helpers import Watch, approve, eventually, settings, states

POOLS = {"gpu": {"gpu_model": "H100", "providers": ["sim"]}}
CMD = ProvisionRequest(id="fenced", requester="scaler", pool="gpu", count=6)


async def open_inventory(path: Path) -> Inventory:
    return Inventory(await Store.open(path / "provisioner.db", MIGRATIONS))


async def test_a_later_token_takes_a_command_over_and_the_earlier_one_cannot_finish_it(
    tmp_path: Path,
) -> None:
    early, late = await open_inventory(tmp_path), await open_inventory(tmp_path)
    try:
        assert await early.begin(CMD, fence=5)
        assert await late.begin(CMD, fence=9)  # the successor takes it over
        assert not await early.owns(CMD.id, 5) and await late.owns(CMD.id, 9)
        assert not await early.begin(CMD, fence=5)  # a redelivery to the old one
        await early.finish(CMD.id, "failed", "gave up", fence=5)
        assert await late.command_status(CMD.id) == "running"
        await late.finish(CMD.id, "done", "created 6 of 6", fence=9)
        assert await early.command_status(CMD.id) == "done"
    finally:
        await early.store.close()
        await late.store.close()


async def test_a_run_taken_over_stops_before_its_next_provider_call(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    # Each create takes 0.5 s, so the six-unit run is still at work when the successor
    # takes it over.
    sim = {"boot_delay_s": [0.2, 0.2], "api_latency_s": 0.5}
    svc = ProvisionerService(settings(tmp_path, POOLS, sim=sim), nats_url=nats_url)
    events = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    audits = await Watch(AuditRecord).start(nc, subjects.audit("provisioner"))
    successor = await open_inventory(tmp_path)
    await svc.start()
    try:
        await approve(nc, CMD)
        await events.until(lambda ev: len(states(ev, "booting")) >= 1, 10)
        # Hold the run before the takeover: it may notice the takeover, stop and leave
        # the running table while the successor's write is still being handed back.
        run = svc._running[CMD.id]
        # A successor on the same store takes the command over, as a standby that took
        # the lease would; this instance has not noticed anything (it still holds its
        # lease as far as it knows).
        assert await successor.begin(CMD, fence=svc.lease_token + 1)
        created_then = len(svc.providers.get("sim")._units)  # type: ignore[union-attr]
        await eventually(run.done, 10)
        assert run.result().status == "taken"
        at_provider = len(svc.providers.get("sim")._units)  # type: ignore[union-attr]
        assert at_provider <= created_then + 1, "it went on creating units"  # one in flight
        assert at_provider < CMD.count
        assert svc.lease is not None and svc.lease.held  # it did not know
        assert await successor.command_status(CMD.id) == "running"  # not finished by it
        assert not [r for r in audits.items if r.refs.get("command") == CMD.id]
    finally:
        await events.stop()
        await audits.stop()
        await svc.stop()
        await successor.store.close()
