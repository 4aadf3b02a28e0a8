"""A provision command that gives up releases what it holds, over a real nats-server:
its slots end with a terminal event, the cost-guard settles the reservation at once,
and the next request is approved instead of waiting out `reservation_timeout_s`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from contracts import subjects
from contracts.commands import ProvisionRequest, Verdict
from contracts.events import Alert, UnitEvent
from services.costguard.service import CostGuard
from services.kit.service import encode
from services.provisioner.inventory import unit_name
from services.provisioner.service import ProvisionerService
from tests.clocks import noon_clock
from tests.provisioner_helpers import Watch, alerts, eventually, settings
from tests.test_costguard_service import make_settings

UNIT_USD = 2.0
"""The pool's ceiling: with no offer to quote (the provider fails), each unit's price."""


async def ask(nc: Client, rid: str, count: int) -> None:
    req = ProvisionRequest(id=rid, requester="operator", pool="h100", gpu_model="H100", count=count)
    await nc.jetstream().publish(
        subjects.PROVISION_REQUESTED, encode(req), headers={"Nats-Msg-Id": rid}
    )


async def reserved(nc: Client) -> float:
    reply = await nc.request(subjects.api("budget"), b"{}", timeout=5)
    return float(json.loads(reply.data)["reserved_usd_per_hour"])


async def eventually_async(
    read: Callable[[], Awaitable[float]], want: float, within_s: float = 5.0
) -> None:
    """Poll `read()` (an API call) until it returns `want`, or fail with the last value."""
    deadline = time.monotonic() + within_s
    got = await read()
    while got != want:
        if time.monotonic() > deadline:
            raise AssertionError(f"still {got} after {within_s}s, wanted {want}")
        await asyncio.sleep(0.05)
        got = await read()


@pytest.mark.parametrize(
    ("sim", "ceiling", "ending"),
    [
        # every call answers 503: the command retries, then gives up after its attempts
        ({"error_rate": 1.0}, UNIT_USD, "gave up after 2 attempts"),
        # no offer within the ceiling: the first slot fails at once, two are never tried
        ({}, 0.01, "no H100 offer within $0.01/h"),
    ],
    ids=["transient-errors", "no-offer"],
)
async def test_a_command_that_gives_up_releases_its_reservation_and_ends_its_slots(
    nats_url: str,
    nc: Client,
    tmp_path: Path,
    sim: dict[str, Any],
    ceiling: float,
    ending: str,
) -> None:
    pools = {"h100": {"gpu_model": "H100", "providers": ["sim"], "max_usd_per_hour": ceiling}}
    guard = CostGuard(
        make_settings(tmp_path / "guard", pools, max_burn_usd_per_hour=3 * ceiling),
        nats_url=nats_url,
    )
    guard.clock = noon_clock(time.time())  # type: ignore[method-assign]
    prov = ProvisionerService(
        settings(
            tmp_path / "prov",
            pools,
            sim=sim,
            retry_attempts=1,
            command_attempts=2,
            command_retry_s=0.2,
            breaker_failures=1000,
        ),
        nats_url=nats_url,
    )
    prov.clock = guard.clock  # type: ignore[method-assign]  # the verdicts' clock-skew check
    units = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    verdicts = await Watch(Verdict).start(nc, "fleet.budget.*")
    alert_watch = await Watch(Alert).start(nc, subjects.ALERT_ALL)
    await guard.start()
    await prov.start()
    try:
        await ask(nc, "doomed", 3)  # the whole burn cap
        first = await verdicts.until(lambda v: len(v) >= 1)
        assert first[0].decision == "approved"

        def ended(events: list[UnitEvent]) -> bool:
            return len({e.unit for e in events if e.state == "failed"}) == 3

        events = await units.until(ended, 20)
        slots = {e.unit for e in events if e.command_id == "doomed"}
        assert len(slots) == 3
        assert all(e.command_id == "doomed" for e in events if e.state == "failed")
        assert {e.unit for e in events if e.state == "failed"} == slots
        assert all(ending in e.reason for e in events if e.state == "failed")
        got = await alert_watch.until(lambda a: bool(alerts(a, "provision_failed")))
        assert "doomed" in alerts(got, "provision_failed")[0].message

        # the cost-guard settled all three slots: nothing stays reserved ...
        await eventually_async(lambda: reserved(nc), 0.0)
        # ... so the next request fits under the burn cap at once
        await ask(nc, "next", 3)
        second = await verdicts.until(lambda v: len(v) >= 2)
        assert (second[1].id, second[1].decision) == ("next", "approved"), second[1].reason
        listed = json.loads((await nc.request(subjects.api("units.list"), b"{}", timeout=5)).data)
        doomed = [u for u in listed["units"] if u["command_id"] == "doomed"]
        assert sorted(u["state"] for u in doomed) == ["failed"] * 3
    finally:
        for w in (units, verdicts, alert_watch):
            await w.stop()
        await prov.stop()
        await guard.stop()


async def test_under_5xx_and_timeouts_no_slot_stays_requested_and_nothing_stays_reserved(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    """Half of the provider's answers are 5xx and almost a third time out (a timed-out
    create may have made its unit all the same): every command ends with each slot
    either running or ended, no `requested` slot and no reservation is left behind, and
    a unit whose create timed out for a slot that was ended does not stay at the
    provider."""
    pools = {"h100": {"gpu_model": "H100", "providers": ["sim"], "max_usd_per_hour": 3.0}}
    guard = CostGuard(
        make_settings(tmp_path / "guard", pools, max_burn_usd_per_hour=100.0),
        nats_url=nats_url,
    )
    guard.clock = noon_clock(time.time())  # type: ignore[method-assign]
    faults = {"error_rate": 0.5, "timeout_rate": 0.3, "timeout_s": 0.02, "seed": 11}
    prov = ProvisionerService(
        settings(
            tmp_path / "prov",
            pools,
            sim=faults,
            retry_attempts=3,
            command_attempts=2,
            command_retry_s=0.1,
            breaker_failures=1000,
            reconcile_interval_s=0.3,
        ),
        nats_url=nats_url,
    )
    prov.clock = guard.clock  # type: ignore[method-assign]  # the verdicts' clock-skew check
    requests = [f"flaky-{i}" for i in range(10)]
    slots = {unit_name(rid, i) for rid in requests for i in range(2)}
    units = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    verdicts = await Watch(Verdict).start(nc, "fleet.budget.*")
    await guard.start()
    await prov.start()
    try:
        for rid in requests:
            await ask(nc, rid, 2)
        got = await verdicts.until(lambda v: len(v) >= len(requests))
        assert {v.decision for v in got} == {"approved"}, [v.reason for v in got]

        def settled(events: list[UnitEvent]) -> bool:
            return {e.unit for e in events if e.state in ("ready", "failed")} >= slots

        seen = await units.until(settled, 60)
        ready = {e.unit for e in seen if e.state == "ready"}
        failed = {e.unit for e in seen if e.state == "failed"}
        assert ready and failed, "the faults should leave some slots made and some ended"

        listed = json.loads((await nc.request(subjects.api("units.list"), b"{}", timeout=5)).data)
        assert [u["unit"] for u in listed["units"] if u["state"] == "requested"] == []
        assert {u["unit"] for u in listed["units"]} == slots
        # every ready unit started billing and every ended slot was settled
        await eventually_async(lambda: reserved(nc), 0.0, within_s=10)

        sim = prov.providers.get("sim")
        assert sim is not None

        def at_provider() -> set[str]:
            return {u.unit for u in sim._units.values()}  # type: ignore[attr-defined]

        live = {u["unit"] for u in listed["units"] if u["state"] in ("booting", "ready")}
        await eventually(lambda: at_provider() == live, 20)  # strays are destroyed
    finally:
        for w in (units, verdicts):
            await w.stop()
        await prov.stop()
        await guard.stop()
