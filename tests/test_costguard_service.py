"""The cost-guard on a real nats-server: requests in, one verdict and one audit
record out for each; a binding budget; people deciding through `fleet approve`;
redeliveries; a restart that keeps the day's spend."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from contracts import subjects
from contracts.commands import ProvisionRequest, ScaleProposal, Verdict
from contracts.events import AuditRecord, DeadLetter, UnitEvent
from contracts.offers import Offer
from services.costguard.ledger import DAY_S
from services.costguard.service import CostGuard
from services.costguard.settings import CostguardSettings
from services.kit.config import load_settings
from services.kit.service import encode
from tests.clocks import noon_clock
from tests.signing_helpers import OPERATOR_NAME, SEEDS, publish_event, signing

REPO = Path(__file__).resolve().parents[1]


def make_settings(
    store: Path, pools: dict[str, Any] | None = None, **budget: Any
) -> CostguardSettings:
    """Fast sweeps and a short offers wait; `pools` replaces the one h100 pool."""
    return load_settings(
        CostguardSettings,
        env={},
        overrides={
            "store": {"dir": str(store)},
            "signing": signing("costguard"),
            "stop_deadline_s": 0.5,
            "budget": {
                "daily_usd": 1000.0,
                "approval_threshold_usd_per_hour": 50.0,
                "offers_timeout_s": 0.3,
                "held_sweep_s": 0.2,
                **budget,
            },
            "pools": pools
            or {
                "h100": {"gpu_model": "H100", "providers": ["sim"], "max_usd_per_hour": 2.0},
                "scaler": {"min": 1},  # another service's keys are ignored
            },
        },
    )


def costguard(
    settings: CostguardSettings, nats_url: str, clock: Callable[[], float] | None = None
) -> CostGuard:
    """A cost-guard whose day starts at noon UTC, whenever the suite runs."""
    svc = CostGuard(settings, nats_url=nats_url)
    svc.clock = clock or noon_clock(time.time())  # type: ignore[method-assign]
    return svc


class Wire:
    """What the cost-guard publishes, as a test reads it."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.verdicts: asyncio.Queue[Verdict] = asyncio.Queue()
        self.audits: asyncio.Queue[AuditRecord] = asyncio.Queue()
        self.seen: list[Verdict] = []

    async def start(self) -> None:
        async def on_verdict(msg: Any) -> None:
            v = msgspec.json.decode(msg.data, type=Verdict)
            self.seen.append(v)
            await self.verdicts.put(v)

        async def on_audit(msg: Any) -> None:
            await self.audits.put(msgspec.json.decode(msg.data, type=AuditRecord))

        self.subs = [
            await self.nc.subscribe("fleet.budget.approved", cb=on_verdict),
            await self.nc.subscribe("fleet.budget.denied", cb=on_verdict),
            await self.nc.subscribe("fleet.budget.held", cb=on_verdict),
            await self.nc.subscribe("fleet.audit.costguard", cb=on_audit),
        ]
        await self.nc.flush()

    async def verdict(self) -> Verdict:
        return await asyncio.wait_for(self.verdicts.get(), 5.0)

    async def audit(self) -> AuditRecord:
        return await asyncio.wait_for(self.audits.get(), 5.0)

    async def send(self, subject: str, msg: Any) -> None:
        await self.nc.jetstream().publish(subject, msg if isinstance(msg, bytes) else encode(msg))

    async def budget(self) -> dict[str, Any]:
        reply = await self.nc.request(subjects.api("budget"), b"{}", timeout=5)
        return json.loads(reply.data)

    async def close(self) -> None:
        for sub in self.subs:
            await sub.unsubscribe()


@pytest.fixture
async def wire(nc: Client) -> AsyncIterator[Wire]:
    w = Wire(nc)
    await w.start()
    yield w
    await w.close()


def provision(id: str, count: int = 1, **kw: Any) -> ProvisionRequest:
    return ProvisionRequest(
        id=id, requester=kw.pop("requester", "brain"), pool="h100", count=count, **kw
    )


async def test_proposals_become_priced_commands_with_verdicts_and_audit_records(
    nats_url: str, nc: Client, wire: Wire, tmp_path: Path
) -> None:
    async def offers(msg: Any) -> None:
        offer = Offer(provider="sim", offer_id="sim-h100-1", gpu_model="H100", usd_per_hour=1.5)
        await msg.respond(encode({"offers": [offer]}))

    provisioner = await nc.subscribe(subjects.api("gpus.available"), cb=offers)
    svc = costguard(make_settings(tmp_path), nats_url)
    await svc.start()
    try:
        await wire.send(
            subjects.scale_proposed("h100"),
            ScaleProposal(id="p1", pool="h100", current=1, desired=3),
        )
        verdict = await wire.verdict()
        assert verdict.id == "p1" and verdict.decision == "approved"
        cmd = verdict.command
        assert isinstance(cmd, ProvisionRequest)
        assert (cmd.id, cmd.count, cmd.provider, cmd.max_usd_per_hour) == ("p1", 2, "sim", 1.5)
        assert verdict.usd_per_hour == pytest.approx(3.0)
        audit = await wire.audit()
        assert audit.refs["request"] == "p1" and audit.result == "approved"
        assert "within the daily budget" in audit.reasoning

        dead = await nc.subscribe("fleet.dead.>")
        await wire.send(
            subjects.PROVISION_REQUESTED,
            b'{"kind":"provisionrequest","id":"b1","requester":"x","pool":"h100","count":-1}',
        )
        letter = msgspec.json.decode((await dead.next_msg(5)).data, type=DeadLetter)
        assert letter.subject == "fleet.provision.requested" and "count" in letter.reason
        await dead.unsubscribe()
        await wire.send(subjects.PROVISION_REQUESTED, provision("b2", provider="aws"))
        refused = await wire.verdict()
        assert refused.id == "b2" and refused.decision == "denied"
        assert "unknown provider 'aws'" in refused.reason
        assert svc.metrics.counts["requests_rejected"] == 2
        assert svc.metrics.counts["verdicts_approved"] == 1
        figures = await wire.budget()
        assert figures["reserved_usd_per_hour"] == pytest.approx(3.0)
    finally:
        await svc.stop()
        await provisioner.unsubscribe()


async def test_a_binding_budget_denies_what_does_not_fit(
    nats_url: str, wire: Wire, tmp_path: Path
) -> None:
    # no provisioner answers: each unit is priced at the pool's 2 $/h ceiling; at noon
    # 12 hours are left, so the day has room for 3 units, not 4
    daily = 2.0 * 12 * 3.5
    svc = costguard(make_settings(tmp_path, daily_usd=daily), nats_url)
    await svc.start()
    try:
        for i in range(6):
            await wire.send(subjects.PROVISION_REQUESTED, provision(f"r{i}"))
        verdicts = [await wire.verdict() for _ in range(6)]
        decisions = [v.decision for v in verdicts]
        assert decisions.count("approved") == 3 and decisions.count("denied") == 3
        assert all("daily budget" in v.reason for v in verdicts if v.decision == "denied")
        committed = sum(v.usd_per_hour for v in verdicts if v.decision == "approved")
        figures = await wire.budget()
        assert committed * figures["hours_left"] <= daily
        assert figures["projected_today_usd"] <= daily
    finally:
        await svc.stop()


async def run_fleet(*args: str) -> tuple[int, str, str]:
    """`fleet ARGS` as the test operator (its seed in FLEET_OPERATOR_SEED)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools",
        *args,
        cwd=REPO,
        env={**os.environ, "FLEET_OPERATOR_SEED": SEEDS["operator"].decode()},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_a_person_approves_a_held_request_with_fleet_approve(
    nats_url: str, wire: Wire, tmp_path: Path
) -> None:
    svc = costguard(make_settings(tmp_path, approval_threshold_usd_per_hour=3.0), nats_url)
    await svc.start()
    try:
        await wire.send(subjects.PROVISION_REQUESTED, provision("big", count=4))  # 8 $/h
        held = await wire.verdict()
        assert held.decision == "held" and "fleet approve big" in held.reason
        assert [h["id"] for h in (await wire.budget())["held"]] == ["big"]

        code, out, err = await run_fleet("approve", "big", "--reason", "launch", "--nats", nats_url)
        assert (code, out.strip()) == (0, "big: approved"), err
        approved = await wire.verdict()
        assert approved.decision == "approved" and approved.id == "big"
        assert OPERATOR_NAME in approved.reason  # the name of the key that signed it
        assert isinstance(approved.command, ProvisionRequest) and approved.command.count == 4
        assert (await wire.budget())["held"] == []

        code, _, err = await run_fleet("reject", "big", "--nats", nats_url)
        assert code == 1 and "not held" in err and "approved" in err
        code, _, err = await run_fleet("approve", "nosuch", "--nats", nats_url)
        assert code == 1 and "no held request 'nosuch'" in err
    finally:
        await svc.stop()
    code, _, err = await run_fleet("approve", "big", "--nats", nats_url)
    assert code == 1 and "no cost-guard answered" in err


async def test_a_held_request_nobody_decides_is_denied(
    nats_url: str, wire: Wire, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, approval_threshold_usd_per_hour=1.0, hold_timeout_s=0.5)
    svc = costguard(settings, nats_url)
    await svc.start()
    try:
        await wire.send(subjects.PROVISION_REQUESTED, provision("slow", count=2))
        assert (await wire.verdict()).decision == "held"
        timed_out = await wire.verdict()
        assert timed_out.id == "slow" and timed_out.decision == "denied"
        assert "nobody approved it" in timed_out.reason
        assert svc.metrics.counts["verdicts_denied"] == 1
    finally:
        await svc.stop()


async def test_a_redelivered_request_gets_one_verdict(
    nats_url: str, wire: Wire, tmp_path: Path
) -> None:
    svc = costguard(make_settings(tmp_path), nats_url)
    await svc.start()
    try:
        for _ in range(3):  # no Nats-Msg-Id: the stream keeps all three copies
            await wire.send(subjects.PROVISION_REQUESTED, provision("same"))
        await wire.send(subjects.PROVISION_REQUESTED, provision("after"))
        first, last = await wire.verdict(), await wire.verdict()
        assert (first.id, last.id) == ("same", "after")  # the copies in between gave nothing
        assert [v.id for v in wire.seen] == ["same", "after"]
        assert svc.metrics.counts["verdicts_approved"] == 2
        assert (await wire.budget())["reserved_usd_per_hour"] == pytest.approx(4.0)
    finally:
        await svc.stop()


async def test_a_restart_keeps_the_days_spend(nats_url: str, wire: Wire, tmp_path: Path) -> None:
    clock = noon_clock(time.time())  # one clock for the three cost-guards: the same day
    started = time.time()
    event = UnitEvent(pool="h100", unit="u1", state="ready", usd_per_hour=3600.0, ts=started)
    first = costguard(make_settings(tmp_path / "a"), nats_url, clock)
    await first.start()
    try:
        await publish_event(wire.nc, event)
        await wire.send(subjects.PROVISION_REQUESTED, provision("mark"))
        await wire.verdict()  # unit events and requests run on separate consumers: poll the API
        for _ in range(50):
            if (await wire.budget())["burn_usd_per_hour"] > 0:
                break
            await asyncio.sleep(0.1)
        now = clock()
        spent = (await wire.budget())["spent_today_usd"]
        # 1 $/s since the event, or since the clock's midnight if that came later
        assert spent >= now - max(started, (now // DAY_S) * DAY_S)
        assert spent > 0
    finally:
        await first.stop()

    for store in ("a", "fresh"):  # the same store, then none: replayed from FLEET_EVENTS
        again = costguard(make_settings(tmp_path / store), nats_url, clock)
        await again.start()
        try:
            for _ in range(50):
                figures = await wire.budget()
                if figures["burn_usd_per_hour"] > 0:
                    break
                await asyncio.sleep(0.1)
            assert figures["burn_usd_per_hour"] == pytest.approx(3600.0), store
            assert figures["spent_today_usd"] >= spent, store
        finally:
            await again.stop()
