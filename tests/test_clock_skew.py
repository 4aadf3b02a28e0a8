"""Clock skew, both ways: a message dated beyond `MAX_CLOCK_SKEW_S` is refused, and
nothing dated ahead of the cost-guard's clock can move its ledger to another day.

One unit event dated three days ahead used to roll the ledger to that day and erase
today's spend; a second one, seconds past midnight, erased the day's closed spend too.
"""

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
from contracts.base import MAX_CLOCK_SKEW_S, clock_skew_problem
from contracts.commands import ProvisionRequest, Verdict
from contracts.events import DeadLetter, UnitEvent
from services.costguard.ledger import DAY_S, Ledger, apply_unit_event, spent_today
from services.costguard.service import CostGuard
from services.kit.service import encode
from tests.clocks import HOUR_S, noon_clock
from tests.signing_helpers import publish_event
from tests.test_costguard_service import make_settings

MIDNIGHT = 20_000 * DAY_S
NOON = MIDNIGHT + DAY_S / 2


def event(unit: str, state: str, ts: float, usd: float = 2.0) -> UnitEvent:
    return UnitEvent(pool="h100", unit=unit, state=state, usd_per_hour=usd, ts=ts)  # type: ignore[arg-type]


# -- the contract rule ---------------------------------------------------------------
def test_a_message_up_to_the_skew_ahead_is_believed_and_one_second_more_is_not() -> None:
    assert clock_skew_problem(NOON + MAX_CLOCK_SKEW_S, NOON) is None
    why = clock_skew_problem(NOON + MAX_CLOCK_SKEW_S + 1, NOON)
    assert why == (
        f"ts {NOON + 301:.3f} is 301 s ahead of this clock (at most 300 s allowed); "
        "check the sender's clock (NTP)"
    )


def test_an_old_message_is_believed() -> None:
    # replaying a stream on a new store reads events days old: old is not skewed
    assert clock_skew_problem(NOON - 3 * DAY_S, NOON) is None


def test_a_time_that_is_not_a_number_is_refused() -> None:
    why = clock_skew_problem(float("nan"), NOON)
    assert why is not None and "not a time" in why


# -- the ledger ------------------------------------------------------------------------
def today_with_spend() -> Ledger:
    """$2 closed (one hour at 2 $/h) and one unit billing 2 $/h since noon."""
    ledger = apply_unit_event(Ledger(), event("a", "ready", NOON - HOUR_S), NOON - HOUR_S)
    ledger = apply_unit_event(ledger, event("a", "terminated", NOON), NOON)
    return apply_unit_event(ledger, event("b", "ready", NOON), NOON)


def test_a_unit_event_dated_three_days_ahead_leaves_todays_spend_alone() -> None:
    ledger = today_with_spend()
    later = NOON + HOUR_S
    assert spent_today(ledger, later) == pytest.approx(4.0)
    forged = event("x", "ready", later + 3 * DAY_S, usd=0.01)
    after = apply_unit_event(ledger, forged, later)
    assert after == ledger
    assert spent_today(after, later) == pytest.approx(4.0)


def test_an_event_seconds_past_midnight_keeps_the_days_closed_spend() -> None:
    ledger = today_with_spend()
    almost = MIDNIGHT + DAY_S - 2  # 23:59:58, the sender's clock 3 s ahead
    after = apply_unit_event(ledger, event("c", "booting", MIDNIGHT + DAY_S + 1), almost)
    assert spent_today(after, almost) == pytest.approx(2.0 + 2.0 * (almost - NOON) / HOUR_S)
    # the day rolls on the cost-guard's clock, and the new day counts only its own spend
    tomorrow = MIDNIGHT + DAY_S + 10
    assert spent_today(after, tomorrow) == pytest.approx(2.0 * 10 / HOUR_S + 2.0 * 9 / HOUR_S)


def test_an_end_dated_before_the_unit_began_billing_is_not_believed() -> None:
    ledger = today_with_spend()  # b bills 2 $/h since noon
    later = NOON + HOUR_S
    backdated = apply_unit_event(ledger, event("b", "terminated", NOON - HOUR_S), later)
    assert backdated == ledger
    assert spent_today(backdated, later) == pytest.approx(4.0)
    # within the skew, an end a little before the start closes the unit at no cost
    skewed = apply_unit_event(ledger, event("b", "terminated", NOON - 60), later)
    assert spent_today(skewed, later) == pytest.approx(2.0)


# -- the cost-guard on the wire -----------------------------------------------------------
class DeadLetters:
    def __init__(self) -> None:
        self.items: asyncio.Queue[DeadLetter] = asyncio.Queue()

    async def on(self, msg: Any) -> None:
        await self.items.put(msgspec.json.decode(msg.data, type=DeadLetter))

    async def next(self) -> DeadLetter:
        return await asyncio.wait_for(self.items.get(), 5.0)


@pytest.fixture
async def guard(nats_url: str, tmp_path: Path) -> AsyncIterator[CostGuard]:
    svc = CostGuard(make_settings(tmp_path), nats_url=nats_url)
    svc.clock = noon_clock(time.time())  # type: ignore[method-assign]
    await svc.start()
    yield svc
    await svc.stop()


async def budget(nc: Client) -> dict[str, Any]:
    return json.loads((await nc.request(subjects.api("budget"), b"{}", timeout=5)).data)


async def test_the_costguard_dead_letters_a_unit_event_dated_days_ahead(
    nc: Client, guard: CostGuard
) -> None:
    dead = DeadLetters()
    sub = await nc.subscribe("fleet.dead.fleet.unit.>", cb=dead.on)
    await publish_event(nc, event("u1", "ready", time.time(), usd=3600.0))
    ahead = event("u2", "ready", guard.clock() + 3 * DAY_S, usd=0.01)
    await publish_event(nc, ahead)  # signed by the provisioner, and still not believed
    letter = await dead.next()
    assert letter.subject == "fleet.unit.h100.u2" and "ahead of this clock" in letter.reason
    figures = await budget(nc)
    assert figures["burn_usd_per_hour"] == pytest.approx(3600.0)  # u1 counted, u2 not
    assert guard.metrics.counts["unit_events_rejected"] == 1
    await sub.unsubscribe()


async def test_the_costguard_dead_letters_a_command_dated_days_ahead_and_judges_the_next(
    nc: Client, guard: CostGuard
) -> None:
    dead = DeadLetters()
    verdicts: asyncio.Queue[Verdict] = asyncio.Queue()

    async def on_verdict(msg: Any) -> None:
        await verdicts.put(msgspec.json.decode(msg.data, type=Verdict))

    subs = [
        await nc.subscribe("fleet.dead.fleet.provision.requested", cb=dead.on),
        await nc.subscribe("fleet.budget.*", cb=on_verdict),
    ]
    js = nc.jetstream()
    now = guard.clock()
    for rid, ts in (("future", now + 3 * DAY_S), ("fine", time.time())):
        ask = ProvisionRequest(id=rid, requester="brain", pool="h100", ts=ts)
        await js.publish(subjects.PROVISION_REQUESTED, encode(ask))
    letter = await dead.next()
    assert "ProvisionRequest future" in letter.reason and "ahead of this clock" in letter.reason
    verdict = await asyncio.wait_for(verdicts.get(), 5.0)
    assert (verdict.id, verdict.decision) == ("fine", "approved")
    assert verdicts.empty()
    assert guard.metrics.counts["requests_rejected"] == 1
    for sub in subs:
        await sub.unsubscribe()


async def test_the_costguard_keeps_billing_a_unit_whose_end_is_dated_an_hour_early(
    nc: Client, guard: CostGuard
) -> None:
    started = time.time()
    await publish_event(nc, event("u1", "ready", started, 3600.0))
    early = event("u1", "terminated", started - HOUR_S, 3600.0)
    await publish_event(nc, early)
    await publish_event(nc, event("u2", "ready", started, 1.0))
    for _ in range(100):  # events are applied in order: u2 counted means u1's end was read
        figures = await budget(nc)
        if figures["burn_usd_per_hour"] not in (0.0, 3600.0):
            break
        await asyncio.sleep(0.05)
    assert figures["burn_usd_per_hour"] == pytest.approx(3601.0)
