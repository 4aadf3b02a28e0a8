"""Signed money on a real nats-server: the provisioner carries out only verdicts the
cost-guard signed under a current fence, the cost-guard's ledger moves only on unit
events the provisioner signed, and only a listed operator's key decides a held request.
Each refusal is dead-lettered with its reason and changes nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from contracts import subjects
from contracts.commands import DecideRequest, ProvisionRequest, Verdict
from contracts.events import Alert, AuditRecord, DeadLetter, UnitEvent
from contracts.signatures import FENCE_HEADER
from contracts.telemetry import UnitTelemetry
from services.costguard.service import CostGuard
from services.kit.config import load_settings
from services.kit.service import encode
from services.kit.signing import verify
from services.provisioner.service import ProvisionerService
from services.watcher.service import Watcher
from services.watcher.settings import WatcherSettings
from tests.clocks import noon_clock
from tests.provisioner_helpers import Watch, approve, eventually, settings, states
from tests.signing_helpers import (
    COSTGUARD,
    INTRUDER,
    OPERATOR_NAME,
    PROVISIONER,
    WATCHER,
    publish_event,
    signed_decision,
    signed_verdict,
    signing,
)
from tests.test_costguard_service import make_settings

POOL = {"gpu": {"gpu_model": "H100", "providers": ["sim"], "max_usd_per_hour": 10.0}}
POOL_H100 = {"h100": {"gpu_model": "H100", "providers": ["sim"], "max_usd_per_hour": 3.0}}
"""The cost-guard's pool here; sim rents an H100 at 2.49 $/h."""


class Inbox:
    """Raw messages on a subject (headers kept), with waiting for a count."""

    def __init__(self) -> None:
        self.msgs: list[Any] = []
        self._changed = asyncio.Event()

    async def start(self, nc: Client, subject: str) -> Inbox:
        async def on(msg: Any) -> None:
            self.msgs.append(msg)
            self._changed.set()

        self._sub = await nc.subscribe(subject, cb=on)
        await nc.flush()
        return self

    async def until(self, n: int, within_s: float = 10.0) -> list[Any]:
        async def loop() -> None:
            while len(self.msgs) < n:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), within_s)
        return self.msgs

    def decoded(self, kind: Any) -> list[Any]:
        return [msgspec.json.decode(m.data, type=kind) for m in self.msgs]

    async def stop(self) -> None:
        await self._sub.unsubscribe()


@pytest.fixture
async def provisioner(nats_url: str, tmp_path: Path) -> AsyncIterator[ProvisionerService]:
    svc = ProvisionerService(settings(tmp_path, POOL), nats_url=nats_url)
    await svc.start()
    yield svc
    await svc.stop()


async def publish_verdict(nc: Client, cmd: ProvisionRequest, headers: dict[str, str]) -> None:
    verdict = Verdict(id=cmd.id, decision="approved", request=cmd, command=cmd)
    await nc.jetstream().publish(subjects.BUDGET_APPROVED, encode(verdict), headers=headers)


def ask(cmd_id: str, count: int = 1) -> ProvisionRequest:
    return ProvisionRequest(id=cmd_id, requester="t", pool="gpu", count=count)


# -- the provisioner -----------------------------------------------------------------------
async def test_the_provisioner_refuses_unsigned_and_forged_verdicts_and_runs_the_genuine(
    nc: Client, provisioner: ProvisionerService
) -> None:
    dead = await Inbox().start(nc, "fleet.dead.fleet.budget.approved")
    alerts = await Watch(Alert).start(nc, "fleet.alert.critical")
    units = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    await publish_verdict(nc, ask("unsigned", 5), {})
    forged = ask("forged", 5)
    body = encode(Verdict(id="forged", decision="approved", request=forged, command=forged))
    await nc.jetstream().publish(
        subjects.BUDGET_APPROVED, body, headers=INTRUDER.sign(subjects.BUDGET_APPROVED, body, 99)
    )
    await approve(nc, ask("genuine", 1))
    await units.until(lambda items: len(states(items, "ready")) >= 1)
    await dead.until(2)
    letters = [d.reason for d in dead.decoded(DeadLetter)]
    assert "unsigned" in letters[0] and "not signed by the cost-guard" in letters[0]
    assert "forged" in letters[1] and "not a trusted key" in letters[1]
    await alerts.until(lambda items: len(items) >= 2)
    assert {a.kind for a in alerts.items} == {"verdict_refused"}
    # only the genuine command made a unit, and the refusals made none
    assert {e.command_id for e in units.items} == {"genuine"}
    assert await provisioner.inventory.command_status("unsigned") is None
    assert provisioner.metrics.counts["verdicts_refused"] == 2
    for w in (dead, alerts, units):
        await w.stop()


async def test_the_provisioner_refuses_a_verdict_under_a_fence_older_than_one_it_saw(
    nc: Client, provisioner: ProvisionerService
) -> None:
    dead = await Inbox().start(nc, "fleet.dead.fleet.budget.approved")
    units = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    for cmd, fence in ((ask("new-holder"), 9), (ask("old-holder"), 5)):
        body, headers = signed_verdict(
            Verdict(id=cmd.id, decision="approved", request=cmd, command=cmd), fence
        )
        await nc.jetstream().publish(subjects.BUDGET_APPROVED, body, headers=headers)
    (letter,) = [msgspec.json.decode(m.data, type=DeadLetter) for m in await dead.until(1)]
    assert "old-holder" in letter.reason and "fencing token 5 is stale" in letter.reason
    await units.until(lambda items: len(states(items, "ready")) >= 1)
    assert {e.command_id for e in units.items} == {"new-holder"}
    for w in (dead, units):
        await w.stop()


async def test_the_provisioners_unit_events_are_signed_by_its_key(
    nc: Client, provisioner: ProvisionerService
) -> None:
    inbox = await Inbox().start(nc, subjects.UNIT_ALL)
    await approve(nc, ask("p-signed"))
    for msg in await inbox.until(2):  # requested, booting, ...
        signed = verify(msg.subject, msg.data, msg.headers or {}, {PROVISIONER.public_key: "p"})
        assert signed.signer == PROVISIONER.public_key
    await inbox.stop()


# -- the cost-guard ---------------------------------------------------------------------------
@pytest.fixture
async def guard(nats_url: str, tmp_path: Path) -> AsyncIterator[CostGuard]:
    svc = CostGuard(
        make_settings(
            tmp_path / "guard",
            POOL_H100,
            approval_threshold_usd_per_hour=3.0,
            unsigned_end_check_s=0.3,
        ),
        nats_url=nats_url,
    )
    svc.clock = noon_clock(time.time())  # type: ignore[method-assign]
    await svc.start()
    yield svc
    await svc.stop()


async def budget(nc: Client) -> dict[str, Any]:
    reply = await nc.request(subjects.api("budget"), b"{}", timeout=5)
    doc: dict[str, Any] = json.loads(reply.data)
    return doc


async def burn_becomes(nc: Client, usd_per_hour: float) -> None:
    for _ in range(100):
        if (await budget(nc))["burn_usd_per_hour"] == pytest.approx(usd_per_hour):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"burn never became {usd_per_hour}: {await budget(nc)}")


async def test_the_costguard_signs_its_verdicts_with_its_lease_revision(
    nc: Client, guard: CostGuard
) -> None:
    inbox = await Inbox().start(nc, "fleet.budget.*")
    await nc.jetstream().publish(
        subjects.PROVISION_REQUESTED, encode(ProvisionRequest(id="v1", requester="t", pool="h100"))
    )
    (msg,) = await inbox.until(1)
    signed = verify(msg.subject, msg.data, msg.headers or {}, {COSTGUARD.public_key: "cg"})
    assert guard.lease is not None and signed.fence == guard.fence > 0
    assert msg.headers[FENCE_HEADER] == str(guard.fence)
    await inbox.stop()


async def test_the_ledger_ignores_unit_events_the_provisioner_did_not_sign(
    nc: Client, guard: CostGuard
) -> None:
    dead = await Inbox().start(nc, "fleet.dead.fleet.unit.>")
    alerts = await Watch(Alert).start(nc, "fleet.alert.critical")
    now = time.time()
    await publish_event(nc, UnitEvent(pool="h100", unit="u1", state="ready", usd_per_hour=2.0))
    await burn_becomes(nc, 2.0)
    before = await budget(nc)
    # a forged end of the billed unit, and a forged unit, each signed by a key nobody listed
    end = UnitEvent(pool="h100", unit="u1", state="terminated", usd_per_hour=2.0, ts=now)
    await publish_event(nc, end, INTRUDER)
    ghost = UnitEvent(pool="h100", unit="ghost", state="ready", usd_per_hour=900.0)
    await nc.jetstream().publish(subjects.unit("h100", "ghost"), encode(ghost))  # unsigned
    letters = [msgspec.json.decode(m.data, type=DeadLetter) for m in await dead.until(2)]
    assert all("not signed by the provisioner" in d.reason for d in letters)
    # the ghost alarms at once; the end of u1 once nobody (no provisioner runs) confirms it
    await alerts.until(lambda items: len(items) >= 2)
    ghost_alert, end_alert = sorted(alerts.items, key=lambda a: a.unit != "ghost")
    assert ghost_alert.kind == "unit_event_refused" and "`ready`" in ghost_alert.message
    assert end_alert.unit == "u1" and "the ledger keeps billing it" in end_alert.message
    after = await budget(nc)
    assert after["burn_usd_per_hour"] == before["burn_usd_per_hour"] == pytest.approx(2.0)
    assert guard.metrics.counts["unit_events_refused"] == 2
    for w in (dead, alerts):
        await w.stop()


async def test_only_a_listed_operator_key_decides_and_the_key_names_the_operator(
    nc: Client, guard: CostGuard
) -> None:
    verdicts = await Watch(Verdict).start(nc, "fleet.budget.*")
    alerts = await Watch(Alert).start(nc, "fleet.alert.critical")
    audits = await Watch(AuditRecord).start(nc, "fleet.audit.costguard")
    big = ProvisionRequest(id="big", requester="t", pool="h100", count=4)  # 8 $/h: held
    await nc.jetstream().publish(subjects.PROVISION_REQUESTED, encode(big))
    await verdicts.until(lambda items: len(items) >= 1)
    subject = subjects.budget_decide("big")
    claim = DecideRequest(approve=True, operator=OPERATOR_NAME)
    # unsigned, naming a listed operator
    reply = json.loads((await nc.request(subject, encode(claim), timeout=5)).data)
    assert reply["error"]["code"] == 403 and "not signed" in reply["error"]["message"]
    # signed by a key nobody listed
    body, headers = signed_decision("big", claim, INTRUDER)
    reply = json.loads((await nc.request(subject, body, headers=headers, timeout=5)).data)
    assert reply["error"]["code"] == 403 and "not a trusted key" in reply["error"]["message"]
    # the operator's genuine signature moved to another request's subject
    body, headers = signed_decision("other", claim)
    reply = json.loads((await nc.request(subject, body, headers=headers, timeout=5)).data)
    assert reply["error"]["code"] == 403 and "does not match" in reply["error"]["message"]
    assert [h["id"] for h in (await budget(nc))["held"]] == ["big"]
    # signed by the listed key, whatever name the message claims
    body, headers = signed_decision("big", DecideRequest(approve=True, operator="mallory"))
    reply = json.loads((await nc.request(subject, body, headers=headers, timeout=5)).data)
    assert reply["ok"] is True and reply["decision"] == "approved"
    await verdicts.until(lambda items: len(items) >= 2)
    assert f"Approved by {OPERATOR_NAME}" in verdicts.items[-1].reason
    assert "mallory" not in verdicts.items[-1].reason
    assert guard.metrics.counts["decisions_refused"] == 3
    # Each refused attempt to move money is audited and alarmed, not only answered 403.
    await alerts.until(lambda items: len(items) >= 3)
    assert {a.kind for a in alerts.items} == {"decision_refused"}
    assert "not a trusted key" in alerts.items[1].message and "big" in alerts.items[1].message
    await audits.until(lambda items: sum(a.action == "decision refused" for a in items) >= 3)
    for w in (verdicts, alerts, audits):
        await w.stop()


async def test_the_watchers_failure_report_is_confirmed_by_the_provisioner(
    nats_url: str, nc: Client, tmp_path: Path, guard: CostGuard
) -> None:
    """The watcher signs its failure reports with its own key: the ledger does not take
    its word (only the provisioner's) and does not dead-letter it either, the provisioner
    confirms with a `failed` of its own, and nobody is alarmed."""
    prov = ProvisionerService(settings(tmp_path / "prov", POOL_H100), nats_url=nats_url)
    prov.clock = guard.clock  # type: ignore[method-assign]
    alerts = await Watch(Alert).start(nc, "fleet.alert.critical")
    units = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    dead = await Watch(DeadLetter).start(nc, "fleet.dead.fleet.unit.>")
    await prov.start()
    try:
        await nc.jetstream().publish(
            subjects.PROVISION_REQUESTED,
            encode(ProvisionRequest(id="one", requester="t", pool="h100")),
        )
        (unit,) = states(await units.until(lambda i: bool(states(i, "ready"))), "ready")
        await burn_becomes(nc, 2.49)
        report = UnitEvent(pool="h100", unit=unit, state="failed", reason="missed heartbeats")
        await publish_event(nc, report, WATCHER)  # signed as the watcher signs it
        # the provisioner confirms with a signed `failed` (and asks for a replacement)
        await units.until(
            lambda items: [e.state for e in items if e.unit == unit][-2:] == 2 * ["failed"]
        )
        await until_count(guard, "watcher_reports", 1)
        # the ledger ends it on the provisioner's signed `failed`, handled after the report
        await eventually(lambda: f"h100/{unit}" not in guard.ledger.units)
        await nc.flush()
        assert guard.metrics.counts.get("unit_events_refused", 0) == 0
        assert not [a for a in alerts.items if a.kind == "unit_event_refused"]
        assert dead.items == []  # a report is neither believed nor a forgery
    finally:
        for w in (alerts, units, dead):
            await w.stop()
        await prov.stop()


async def test_the_watcher_signs_its_failure_reports_and_believes_only_the_provisioner(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    overrides = {"store": {"dir": str(tmp_path)}, "stop_deadline_s": 0.5}
    overrides.update(
        signing=signing("watcher"), watcher={"tick_s": 0.1, "heartbeat_timeout_s": 0.5}
    )
    watcher = Watcher(
        load_settings(WatcherSettings, env={}, overrides=overrides), nats_url=nats_url
    )
    reports = await Inbox().start(nc, subjects.unit("p", "u1"))
    dead = await Watch(DeadLetter).start(nc, "fleet.dead.fleet.unit.>")
    await watcher.start()
    try:
        # a forged unit event is refused; the provisioner's own is believed
        for signer in (INTRUDER, PROVISIONER):
            await publish_event(nc, UnitEvent(pool="p", unit="u2", state="ready"), signer)
        (letter,) = await dead.until(lambda items: len(items) == 1)
        assert letter.service == "watcher" and "not signed by the provisioner" in letter.reason
        await until_count(watcher, "unit_events", 1)
        # a unit that falls silent is reported failed, signed with the watcher's key
        beat = UnitTelemetry(pool="p", unit="u1", provider="sim", capacity=1.0)
        await nc.publish(subjects.telemetry("p", "u1"), encode(beat))
        (failed,) = await reports.until(1)
        assert msgspec.json.decode(failed.data, type=UnitEvent).state == "failed"
        signed = verify(failed.subject, failed.data, failed.headers, {WATCHER.public_key: "w"})
        assert signed.name == "w"
    finally:
        await reports.stop()
        await dead.stop()
        await watcher.stop()


async def until_count(svc: CostGuard | Watcher, name: str, n: int, within_s: float = 10.0) -> None:
    """Wait until the service has counted `n` of `name` (checked every 50 ms)."""
    for _ in range(int(within_s / 0.05)):
        if svc.metrics.counts.get(name, 0) >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never reached {n}: {dict(svc.metrics.counts)}")
