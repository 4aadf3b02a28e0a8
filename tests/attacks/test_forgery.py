"""Forgery attacks on the money path, by an identity that may publish anywhere: the
test's nats-server has no auth at all, so every broker permission is absent and only
the signatures (docs/adr/0012-signed-messages.md) stand between the attacker and the
budget. Each attack of issue 13's table that needs no more than publishing must fail:
units created by forged verdicts 0, the ledger unchanged by forged unit events, held
requests undecided by forged decisions; and the readers that act on the bus without
moving money themselves: a forged `failed` report replaces no unit, a forged
`terminated` stops no runner or worker, a forged verdict sets no pin.

A real cost-guard and provisioner (sim provider) run in this process with the suite's
keys; the attacker is a plain NATS client with a key of its own that nobody trusts.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client
from nats.js.api import RePublish, StreamConfig, StreamSource, SubjectTransform

from contracts import subjects
from contracts.commands import DecideRequest, ProvisionRequest, Verdict
from contracts.events import Alert, DeadLetter, UnitEvent
from contracts.telemetry import UnitTelemetry
from services.costguard.ledger import DAY_S
from services.costguard.service import CostGuard
from services.kit.config import load_settings
from services.kit.service import encode
from services.provisioner.service import ProvisionerService
from services.runner.service import RunnerService
from services.runner.settings import RunnerSettings
from services.scaler.service import Scaler
from services.scaler.settings import ScalerSettings
from tests.clocks import noon_clock
from tests.provisioner_helpers import settings
from tests.signing_helpers import (
    INTRUDER,
    OPERATOR_NAME,
    PROVISIONER,
    publish_event,
    signed_event,
    signing,
    signing_env,
)
from tests.test_costguard_service import make_settings

pytestmark = [pytest.mark.slow, pytest.mark.attack]

POOLS = {"gpu": {"gpu_model": "H100", "providers": ["sim"], "max_usd_per_hour": 10.0}}


@dataclass
class Fleet:
    """The money path under attack, and what it published."""

    nc: Client
    tmp_path: Path
    nats_url: str
    clock: Any
    guard: CostGuard
    prov: ProvisionerService
    verdicts: list[tuple[Any, Verdict]] = field(default_factory=list)
    """(raw message, decoded) of every verdict, headers included."""
    events: list[UnitEvent] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)

    async def start_guard(self, store: str = "guard") -> CostGuard:
        guard = CostGuard(
            make_settings(
                self.tmp_path / store,
                POOLS,
                daily_usd=5000.0,
                approval_threshold_usd_per_hour=30.0,
                unsigned_end_check_s=1.0,
            ),
            nats_url=self.nats_url,
        )
        guard.clock = self.clock  # type: ignore[method-assign]
        await guard.start()
        self.guard = guard
        return guard

    async def ask(self, cmd_id: str, count: int = 1, pool: str = "gpu") -> Verdict:
        """A legitimate provision request; the cost-guard's verdict on it."""
        seen = len(self.verdicts)
        request = ProvisionRequest(id=cmd_id, requester="ops", pool=pool, count=count)
        await self.nc.jetstream().publish(subjects.PROVISION_REQUESTED, encode(request))
        await until(lambda: any(v.id == cmd_id for _, v in self.verdicts[seen:]))
        return next(v for _, v in self.verdicts[seen:] if v.id == cmd_id)

    def units(self) -> set[str]:
        """Every unit the provisioner has made, from its own unit events."""
        return {e.unit for e in self.events if e.state == "requested"}

    def ready(self) -> set[str]:
        return {e.unit for e in self.events if e.state == "ready"}

    async def budget(self) -> dict[str, Any]:
        reply = await self.nc.request(subjects.api("budget"), b"{}", timeout=5)
        doc: dict[str, Any] = json.loads(reply.data)
        return doc

    def dead_for(self, word: str, service: str = "") -> list[DeadLetter]:
        return [
            d
            for d in self.dead
            if (word in d.reason or word in d.preview) and service in ("", d.service)
        ]


async def until(pred: Any, within_s: float = 20.0) -> None:
    """Wait for `pred()` (checked every 50 ms) or fail."""
    deadline = time.monotonic() + within_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {within_s} s")
        await asyncio.sleep(0.05)


@pytest.fixture
async def fleet(nats_url: str, nc: Client, tmp_path: Path) -> AsyncIterator[Fleet]:
    clock = noon_clock(time.time())
    prov = ProvisionerService(settings(tmp_path / "prov", POOLS), nats_url=nats_url)
    prov.clock = clock  # type: ignore[method-assign]
    f = Fleet(nc, tmp_path, nats_url, clock, guard=None, prov=prov)  # type: ignore[arg-type]

    async def on_verdict(msg: Any) -> None:
        f.verdicts.append((msg, msgspec.json.decode(msg.data, type=Verdict)))

    async def on_event(msg: Any) -> None:
        if msg.headers and "Fleet-Sig" in msg.headers:  # the provisioner's own, not ours
            f.events.append(msgspec.json.decode(msg.data, type=UnitEvent))

    async def on_alert(msg: Any) -> None:
        f.alerts.append(msgspec.json.decode(msg.data, type=Alert))

    async def on_dead(msg: Any) -> None:
        f.dead.append(msgspec.json.decode(msg.data, type=DeadLetter))

    subs = [
        await nc.subscribe("fleet.budget.*", cb=on_verdict),
        await nc.subscribe(subjects.UNIT_ALL, cb=on_event),
        await nc.subscribe("fleet.alert.critical", cb=on_alert),
        await nc.subscribe(subjects.DEAD_ALL, cb=on_dead),
    ]
    await f.start_guard()
    await prov.start()
    try:
        yield f
    finally:
        for sub in subs:
            await sub.unsubscribe()
        await prov.stop()
        await f.guard.stop()


def replayable(headers: dict[str, str]) -> dict[str, str]:
    """A captured message's headers, its signature kept, without the de-duplication id
    (JetStream would drop a copy inside its duplicate window; an attacker leaves it out)."""
    return {k: v for k, v in headers.items() if k != "Nats-Msg-Id"}


def forged_verdict(cmd_id: str, count: int) -> bytes:
    cmd = ProvisionRequest(id=cmd_id, requester="ops", pool="gpu", count=count)
    return encode(Verdict(id=cmd_id, decision="approved", request=cmd, command=cmd))


async def test_forged_verdicts_create_no_unit_however_they_reach_the_provisioner(
    fleet: Fleet, nc: Client
) -> None:
    js = nc.jetstream()
    # 1. straight onto fleet.budget.approved: unsigned, then signed with the attacker's key
    await js.publish(subjects.BUDGET_APPROVED, forged_verdict("forged-plain", 5))
    body = forged_verdict("forged-key", 5)
    await js.publish(
        subjects.BUDGET_APPROVED, body, headers=INTRUDER.sign(subjects.BUDGET_APPROVED, body, 10**9)
    )
    # 2. a stream of the attacker's that republishes into fleet.budget.approved
    await js.add_stream(
        StreamConfig(
            name="EVIL_REPUBLISH",
            subjects=["evil.republish"],
            republish=RePublish(src="evil.republish", dest=subjects.BUDGET_APPROVED),
        )
    )
    await js.publish("evil.republish", forged_verdict("forged-republished", 20))
    # 3. the attacker's stream sourced into FLEET_CMDS with a subject transform
    await js.add_stream(StreamConfig(name="EVIL_SOURCE", subjects=["evil.source"]))
    cmds = (await js.stream_info("FLEET_CMDS")).config
    cmds.sources = [
        StreamSource(
            name="EVIL_SOURCE",
            subject_transforms=[SubjectTransform(src="evil.source", dest=subjects.BUDGET_APPROVED)],
        )
    ]
    await js.update_stream(cmds)
    await js.publish("evil.source", forged_verdict("forged-sourced", 2))
    # 4. a genuine signed verdict moved to `approved`: a denial, with its real signature
    denied = await fleet.ask("too-big", pool="nosuch")  # no such pool: denied
    assert denied.decision == "denied"
    raw = next(m for m, v in fleet.verdicts if v.id == "too-big")
    await js.publish(subjects.BUDGET_APPROVED, raw.data, headers=replayable(raw.headers))
    # a genuine request after all of them still works: the provisioner did not stop
    assert (await fleet.ask("genuine")).decision == "approved"
    await until(lambda: len(fleet.ready()) == 1)

    forged = ["forged-plain", "forged-key", "forged-republished", "forged-sourced", "too-big"]
    await until(lambda: all(fleet.dead_for(f'"id":"{i}"') for i in forged))
    reasons = {i: fleet.dead_for(f'"id":"{i}"')[0].reason for i in forged}
    print("\nrefused verdicts:\n" + "\n".join(f"  {i}: {r}" for i, r in reasons.items()))
    assert "not signed" in reasons["forged-plain"]
    assert "not a trusted key" in reasons["forged-key"]
    assert "not signed" in reasons["forged-republished"]
    assert "not signed" in reasons["forged-sourced"]
    assert "does not match" in reasons["too-big"]  # signed over fleet.budget.denied
    assert len(fleet.units()) == 1  # the genuine one; forged verdicts created 0 units
    refused = [a for a in fleet.alerts if a.kind == "verdict_refused"]
    assert len(refused) == len(forged)
    print(f"units from {len(forged)} forged verdicts: {len(fleet.units()) - 1}")


async def test_a_replayed_genuine_verdict_under_an_old_fence_creates_nothing(
    fleet: Fleet, nc: Client
) -> None:
    assert (await fleet.ask("before-failover")).decision == "approved"
    await until(lambda: len(fleet.ready()) == 1)
    captured = next(m for m, v in fleet.verdicts if v.id == "before-failover")
    old_fence = fleet.guard.fence
    # the cost-guard fails over: a new holder signs with a higher fence
    await fleet.guard.stop()
    await fleet.start_guard("guard-2")
    assert fleet.guard.fence > old_fence
    assert (await fleet.ask("after-failover")).decision == "approved"
    await until(lambda: len(fleet.ready()) == 2)
    # the attacker replays the genuine verdict of the old holder, headers and all
    await nc.jetstream().publish(
        subjects.BUDGET_APPROVED, captured.data, headers=replayable(captured.headers)
    )
    await until(lambda: bool(fleet.dead_for("stale")))
    (letter,) = fleet.dead_for("stale")
    print(f"\nreplayed verdict refused: {letter.reason}")
    assert f"fencing token {old_fence} is stale" in letter.reason
    assert len(fleet.units()) == 2  # one per genuine approval, none from the replay


async def test_a_forged_operator_decision_is_refused_whoever_it_names(
    fleet: Fleet, nc: Client
) -> None:
    held = await fleet.ask("held-big", count=15)  # about 37 $/h: above the 30 $/h threshold
    assert held.decision == "held"
    subject = subjects.budget_decide("held-big")
    for name in (OPERATOR_NAME, "root", "costguard"):
        claim = encode(DecideRequest(approve=True, operator=name, reason="trust me"))
        for headers in ({}, INTRUDER.sign(subject, claim)):
            reply = json.loads((await nc.request(subject, claim, headers=headers, timeout=5)).data)
            assert reply["error"]["code"] == 403, reply
    print(f"\nforged decision answered: {reply['error']['message']}")
    assert [h["id"] for h in (await fleet.budget())["held"]] == ["held-big"]
    assert not fleet.units()


async def test_forged_ends_of_live_units_leave_the_burn_unchanged(fleet: Fleet, nc: Client) -> None:
    assert (await fleet.ask("live", count=3)).decision == "approved"
    await until(lambda: len(fleet.ready()) == 3)
    await until(lambda: fleet.guard.ledger.units.keys() >= {f"gpu/{u}" for u in fleet.ready()})
    burn = (await fleet.budget())["burn_usd_per_hour"]
    assert burn > 0
    js = nc.jetstream()
    for unit in sorted(fleet.ready()):
        end = UnitEvent(pool="gpu", unit=unit, state="terminated", provider="sim")
        await js.publish(subjects.unit("gpu", unit), encode(end))  # unsigned
        body, headers = signed_event(end, INTRUDER)  # signed, by nobody trusted
        await js.publish(subjects.unit("gpu", unit), body, headers=headers)
    await until(lambda: len(fleet.dead_for("not signed by the provisioner")) == 6)
    # each end was investigated: the provisioner still bills the unit, so it is not believed
    await until(lambda: len([a for a in fleet.alerts if "still bills it" in a.message]) == 3)
    after = await fleet.budget()
    print(f"\nburn before {burn} $/h, after 6 forged ends {after['burn_usd_per_hour']} $/h")
    assert after["burn_usd_per_hour"] == pytest.approx(burn)
    assert len(fleet.units()) == 3


async def test_a_unit_event_dated_three_days_ahead_leaves_todays_spend_unchanged(
    fleet: Fleet, nc: Client
) -> None:
    assert (await fleet.ask("spending", count=2)).decision == "approved"
    await until(lambda: len(fleet.ready()) == 2)
    await until(lambda: fleet.guard.ledger.units.keys() >= {f"gpu/{u}" for u in fleet.ready()})
    before = await fleet.budget()
    ahead = fleet.clock() + 3 * DAY_S
    js = nc.jetstream()
    for unit, state in (("future", "ready"), (sorted(fleet.ready())[0], "terminated")):
        event = UnitEvent(pool="gpu", unit=unit, state=state, usd_per_hour=0.01, ts=ahead)  # type: ignore[arg-type]
        await js.publish(subjects.unit("gpu", unit), encode(event))
    await until(lambda: len(fleet.dead_for("not signed by the provisioner")) == 2)
    after = await fleet.budget()
    print(f"\nspent today before {before['spent_today_usd']}, after {after['spent_today_usd']}")
    assert after["spent_today_usd"] >= before["spent_today_usd"]  # it only grows by the second
    assert after["burn_usd_per_hour"] == pytest.approx(before["burn_usd_per_hour"])
    assert fleet.guard.ledger.day == int(fleet.clock() // DAY_S)  # the day did not roll


async def forge_ends(nc: Client, event: UnitEvent) -> None:
    """`event` published twice by the attacker: unsigned, and signed with its own key."""
    subject = subjects.unit(event.pool, event.unit)
    await nc.jetstream().publish(subject, encode(event))
    body, headers = signed_event(event, INTRUDER)
    await nc.jetstream().publish(subject, body, headers=headers)


async def test_a_forged_failure_report_replaces_no_unit(fleet: Fleet, nc: Client) -> None:
    asks: list[ProvisionRequest] = []

    async def on_ask(msg: Any) -> None:
        asks.append(msgspec.json.decode(msg.data, type=ProvisionRequest))

    sub = await nc.subscribe(subjects.PROVISION_REQUESTED, cb=on_ask)
    try:
        assert (await fleet.ask("healthy")).decision == "approved"
        await until(lambda: len(fleet.ready()) == 1)
        (unit,) = fleet.ready()
        report = UnitEvent(pool="gpu", unit=unit, state="failed", reason="missed heartbeats")
        await forge_ends(nc, report)
        refused = "failure report not signed by the watcher"
        await until(lambda: len(fleet.dead_for(refused, "provisioner")) == 2)
    finally:
        await sub.unsubscribe()
    print(f"\nforged failure report refused: {fleet.dead_for(refused)[0].reason}")
    assert [a.requester for a in asks] == ["ops"]  # no replacement was asked for
    reply = await nc.request(subjects.api("units.list"), b'{"pool": "gpu"}', timeout=5)
    rows = json.loads(reply.data)["units"]
    assert [(r["unit"], r["state"]) for r in rows] == [(unit, "ready")]  # not destroyed
    assert len([a for a in fleet.alerts if a.message.startswith("refused a `failed`")]) == 2


def runner_service(nats_url: str, tmp_path: Path) -> RunnerService:
    section = {"model": "sim", "sim_latency_s": 0.0, "unit": "r1"}
    overrides = {"store": {"dir": str(tmp_path)}, "stop_deadline_s": 2.0, "runner": section}
    overrides["signing"] = signing()
    settings = load_settings(RunnerSettings, env={}, overrides=overrides)
    return RunnerService(settings, nats_url=nats_url)


async def test_a_forged_end_stops_no_runner_and_no_worker(
    fleet: Fleet, nc: Client, nats_url: str, tmp_path: Path
) -> None:
    runner = runner_service(nats_url, tmp_path / "runner")
    await runner.start()
    beats: list[UnitTelemetry] = []

    async def on_beat(msg: Any) -> None:
        beats.append(msgspec.json.decode(msg.data, type=UnitTelemetry))

    sub = await nc.subscribe(subjects.telemetry("batch", "w1"), cb=on_beat)
    env = {k: v for k, v in os.environ.items() if k != "FLEET_CONFIG"} | signing_env()
    argv = ["--pool", "batch", "--unit", "w1", "--nats", nats_url, "--interval", "0.1"]
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.provisioner.worker", *argv, env=env, cwd=tmp_path
    )
    try:
        await until(lambda: bool(beats))
        pool = runner.pool_of("assistant")
        for unit_pool, unit in ((pool, runner.unit), ("batch", "w1")):
            await forge_ends(nc, UnitEvent(pool=unit_pool, unit=unit, state="terminated"))
        await until(lambda: len(fleet.dead_for("not signed by the provisioner", "runner")) == 2)
        seen = len(beats)
        await until(lambda: len(beats) >= seen + 5)  # half a second of beats after the forgery
        assert not runner.stopping and runner.state == "ready"
        assert worker.returncode is None
        print(f"\nrunner and worker after 4 forged ends: {runner.state}, pid {worker.pid} alive")
        # the provisioner's own end does stop them: the refusal above was the signature
        for unit_pool, unit in ((pool, runner.unit), ("batch", "w1")):
            end = UnitEvent(pool=unit_pool, unit=unit, state="terminated")
            await publish_event(nc, end, PROVISIONER)
        await asyncio.wait_for(runner.stop_asked(), 10)
        assert await asyncio.wait_for(worker.wait(), 10) == 0
    finally:
        await sub.unsubscribe()
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        await runner.stop()


async def test_a_forged_verdict_sets_no_pin(
    fleet: Fleet, nc: Client, nats_url: str, tmp_path: Path
) -> None:
    overrides = {"store": {"dir": str(tmp_path / "scaler")}, "stop_deadline_s": 0.5}
    overrides.update(pools=POOLS, signing=signing())
    scaler = Scaler(load_settings(ScalerSettings, env={}, overrides=overrides), nats_url=nats_url)
    scaler.clock = fleet.clock
    await scaler.start()
    try:
        js = nc.jetstream()
        cmd = ProvisionRequest(id="forged-pin", requester="ops", pool="gpu", count=4, pin=True)
        body = encode(Verdict(id=cmd.id, decision="approved", request=cmd, command=cmd))
        await js.publish(subjects.BUDGET_APPROVED, body)
        signed = INTRUDER.sign(subjects.BUDGET_APPROVED, body, 10**9)
        await js.publish(subjects.BUDGET_APPROVED, body, headers=signed)
        await until(lambda: len(fleet.dead_for("not signed by the cost-guard", "scaler")) == 2)
        assert scaler.pins == {}
        # a genuine pinned provision does set one
        pinned = ProvisionRequest(id="real-pin", requester="ops", pool="gpu", pin=True)
        await js.publish(subjects.PROVISION_REQUESTED, encode(pinned))
        await until(lambda: "real-pin" in scaler.pins)
        print(f"\npins after a forged and a genuine pinned approval: {sorted(scaler.pins)}")
        assert sorted(scaler.pins) == ["real-pin"]
        assert scaler.metrics.counts["verdicts_refused"] == 2
    finally:
        await scaler.stop()
