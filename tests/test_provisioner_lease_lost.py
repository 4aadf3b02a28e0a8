"""A provisioner that loses its lease in the middle of an approved provision command.

Expected: the holder stops taking work the moment it knows the lease is gone and hands
the command back (no provider call of its own after that); the standby, on the same
store (compose's shared volume), takes over and finishes the command; the pool ends
with exactly the approved number of units, and the command has one terminal outcome."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from contracts import subjects
from contracts.commands import ProvisionRequest
from contracts.events import Alert, AuditRecord, UnitEvent
from services.kit.config import LeaseSettings
from services.kit.lease import BUCKET
from services.provisioner.config import ProvisionerSettings
from services.provisioner.providerset import build_providers
from services.provisioner.service import ProvisionerService
from tests.provisioner_helpers import Watch, alerts, approve, settings, states
from tests.test_lease import until

LEASE_S = 1.0
COUNT = 6
POOLS = {"gpu": {"gpu_model": "H100", "providers": ["sim"]}}
SIM = {"boot_delay_s": [0.3, 0.3], "api_latency_s": 0.25}
"""Units boot in 0.3 s, and every provider call takes 0.25 s, so each slot takes about
half a second to create and the six-slot command runs for about three seconds: the
lease goes while it is in flight (a boot delay alone would not do it, since a command
is done once its units are created, not once they are ready)."""


def make(tmp_path: Path, nats_url: str) -> ProvisionerService:
    s = settings(tmp_path / "store", POOLS, sim=SIM, reconcile_interval_s=0.5)
    s = msgspec.structs.replace(s, lease=LeaseSettings(lease_s=LEASE_S))
    return ProvisionerService(s, nats_url=nats_url)


async def test_lease_lost_mid_command_the_standby_finishes_it_without_duplicates(
    nats_url: str, nc: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One marketplace for both instances, as a real provider is: the standby must see
    # the units the first holder created, under the same idempotency keys.
    shared: dict[str, Any] = {}

    def build_once(s: ProvisionerSettings, *args: Any) -> dict[str, Any]:
        if not shared:
            shared.update(build_providers(s, *args))
        return dict(shared)

    monkeypatch.setattr("services.provisioner.service.build_providers", build_once)

    events = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    audits = await Watch(AuditRecord).start(nc, subjects.audit("provisioner"))
    alert_watch = await Watch(Alert).start(nc, subjects.ALERT_ALL)
    first, second = make(tmp_path, nats_url), make(tmp_path, nats_url)
    await first.start()
    taking_over = asyncio.create_task(second.start())
    late_calls: list[str] = []
    """Provider writes the first holder made after it knew it had lost the lease."""
    first_call = first.providers.call

    async def watched_call(name: str, fn: Any, *, read_only: bool = False) -> Any:
        if first.lease_lost and not read_only:
            late_calls.append(name)
        return await first_call(name, fn, read_only=read_only)

    first.providers.call = watched_call  # type: ignore[method-assign]
    try:
        await until(lambda: second.state == "standby", 10)
        cmd = ProvisionRequest(id="lease-cmd", requester="scaler", pool="gpu", count=COUNT)
        await approve(nc, cmd)

        def mine(ev: list[UnitEvent]) -> list[UnitEvent]:
            return [e for e in ev if e.command_id == cmd.id]

        # mid-command: the first slot has a unit, most slots have not been tried
        await events.until(lambda ev: len(states(mine(ev), "booting")) >= 1, 10)
        assert len(states(mine(events.items), "booting")) < COUNT / 2, "nothing in flight"

        kv = await nc.jetstream().key_value(BUCKET)
        # As if it had lapsed during a pause and been taken by someone else (in one
        # write: a purge would wake the standby, which would take the key itself).
        await kv.put(ProvisionerService.name, b"someone-else")

        await until(lambda: first.state == "stopped", LEASE_S * 6)
        assert first.lease_lost
        await asyncio.wait_for(taking_over, LEASE_S * 8)  # the key lapses; the standby holds it
        assert second.state == "ready"
        assert (await kv.get(ProvisionerService.name)).value == second.instance.encode()

        seen = await events.until(lambda ev: len(states(mine(ev), "ready")) >= COUNT, 20)
        await audits.until(lambda a: any(r.refs.get("command") == cmd.id for r in a), 10)
        # both instances are done with the command (a run the first one left behind too)
        runs = [*first._running.values(), *second._running.values()]
        await until(lambda: all(t.done() for t in runs), 10)

        sim = shared["sim"]
        at_provider = [u.label for u in sim._units.values() if u.label.startswith("fleet.gpu.")]
        outcomes = [
            f"{r.action}: {r.result}" for r in audits.items if r.refs.get("command") == cmd.id
        ]
        reply = await nc.request(subjects.api("units.list"), b'{"pool": "gpu"}', timeout=5)
        listed = [u for u in json.loads(reply.data)["units"] if u["command_id"] == cmd.id]
        problems = [
            f"a run ended with {t.exception()!r} (its store closed under it)"
            for t in runs
            if not t.cancelled() and t.exception() is not None
        ]
        if late_calls:
            problems.append(f"{len(late_calls)} provider write(s) after the lease was lost")
        cleanups = [r.reasoning for r in audits.items if r.action == "cleanup_duplicate"]
        if cleanups:
            problems.append(f"extra provider units created, then destroyed: {cleanups}")
        if len(at_provider) != COUNT or len(set(at_provider)) != COUNT:
            problems.append(f"{len(at_provider)} units at the provider: {sorted(at_provider)}")
        if len(states(mine(seen), "ready")) != COUNT:
            problems.append(f"ready units: {sorted(states(mine(seen), 'ready'))}")
        if outcomes != [f"provision: done: created {COUNT} of {COUNT}"]:
            problems.append(f"terminal outcomes: {outcomes}")
        failed = alerts(alert_watch.items, "command_failed") + alerts(
            alert_watch.items, "provision_failed"
        )
        if failed:
            problems.append(f"failure alerts: {[a.message for a in failed]}")
        if sorted(u["state"] for u in listed) != ["ready"] * COUNT:
            problems.append(f"units.list: {[(u['unit'], u['state']) for u in listed]}")
        assert not problems, problems
    finally:
        for w in (events, audits, alert_watch):
            await w.stop()
        await first.stop()
        await second.stop()
        if not taking_over.done():
            taking_over.cancel()
            await asyncio.gather(taking_over, return_exceptions=True)
