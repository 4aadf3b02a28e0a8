"""A failed unit is answered twice, by the provisioner's replacement and by the scaler's
proposal for the short pool; in either order the pool gets its units back once (five
failed units are five new units, not ten): the judge's decisions with plain values, then
the whole loop."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from nats.aio.client import Client

from contracts import subjects
from contracts.commands import ScaleProposal
from contracts.events import UnitEvent
from services.costguard.judge import judge
from services.costguard.ledger import Ledger, apply_unit_event
from services.provisioner.service import ProvisionerService
from tests.chaos.invariants import read
from tests.fleet_helpers import fleet
from tests.provisioner_helpers import Watch, states
from tests.test_costguard_judge import NOON, policy, provision, unit

POLICY = policy(daily_usd=1000.0, approval_threshold_usd_per_hour=100.0)
UNITS = [f"u{i}" for i in range(5)]


def five_failed() -> Ledger:
    """Five units billed since the morning, all declared failed a minute before noon."""
    ledger = Ledger()
    for name in UNITS:
        ledger = apply_unit_event(ledger, unit(name, "ready", NOON - 3600), NOON - 3600)
        ledger = apply_unit_event(ledger, unit(name, "failed", NOON - 60), NOON - 60)
    return ledger


def replacement(name: str, ts: float = NOON) -> object:
    return provision(f"replace-{name}", requester="provisioner", replaces=name, ts=ts)


def proposal(ts: float = NOON - 30) -> ScaleProposal:
    return ScaleProposal(id="scale-1", ts=ts, pool="h100", current=0, desired=5)


def approved_units(ledger: Ledger, requests: list[object]) -> tuple[Ledger, int, list[str]]:
    units, reasons = 0, []
    for request in requests:
        ledger, verdict, _ = judge(ledger, request, POLICY, NOON)  # type: ignore[arg-type]
        reasons.append(verdict.reason)
        if verdict.decision == "approved" and verdict.command is not None:
            units += getattr(verdict.command, "count", 0)
    return ledger, units, reasons


def test_the_scaler_first_then_the_replacements_are_refused() -> None:
    _, units, reasons = approved_units(five_failed(), [proposal(), *map(replacement, UNITS)])
    assert units == 5, reasons
    assert all("no replacement needed" in r for r in reasons[1:]), reasons


def test_the_replacements_first_then_the_proposal_has_nothing_to_do() -> None:
    _, units, reasons = approved_units(five_failed(), [*map(replacement, UNITS), proposal()])
    assert units == 5, reasons
    assert "nothing to do" in reasons[-1]


def test_replacements_billing_before_the_watcher_saw_them_are_not_proposed_again() -> None:
    ledger, units, _ = approved_units(five_failed(), list(map(replacement, UNITS)))
    assert units == 5
    for name in UNITS:  # the replacements boot: their reservations are settled
        booting = unit(f"r-{name}", "booting", NOON + 1, cmd=f"replace-{name}")
        ledger = apply_unit_event(ledger, booting, NOON + 1)
    # the scaler, from metrics the watcher made before it saw them boot, finds the pool empty
    _, units, reasons = approved_units(ledger, [proposal(ts=NOON + 2)])
    assert units == 0 and "nothing to do" in reasons[0], reasons


def test_a_proposal_made_before_the_unit_failed_does_not_cover_it() -> None:
    early = ScaleProposal(id="scale-0", ts=NOON - 600, pool="h100", current=5, desired=5)
    ledger = Ledger()
    ledger, _, _ = judge(ledger, early, POLICY, NOON - 600)
    for name in UNITS:
        ledger = apply_unit_event(ledger, unit(name, "ready", NOON - 3600), NOON - 3600)
    ledger = apply_unit_event(ledger, unit("u0", "failed", NOON - 60), NOON - 60)
    _, units, reasons = approved_units(ledger, [replacement("u0")])
    assert units == 1, reasons


def test_a_replacement_is_approved_when_the_proposal_s_units_did_not_all_come() -> None:
    ledger, verdict, _ = judge(five_failed(), proposal(), POLICY, NOON)
    assert verdict.decision == "approved" and verdict.command is not None
    for slot in ("s0", "s1"):  # the provisioner gave two of its slots up
        ended = unit(slot, "failed", NOON + 1, cmd=verdict.command.id)
        ledger = apply_unit_event(ledger, ended, NOON + 1)
    _, units, reasons = approved_units(ledger, [replacement("u0"), replacement("u1")])
    assert units == 2, reasons


POOL = {
    "gpu_model": "H100",
    "providers": ["sim"],
    "max_usd_per_hour": 3.0,
    "min": 5,
    "max": 5,
    "cooldown_up_s": 0,
    "stable_window_s": 0.5,
    "panic_window_s": 0.2,
    "repropose_s": 1,
}
"""Held at five units by its bounds; the scaler acts at once when the pool is short."""


async def test_five_failed_units_come_back_as_five_not_ten(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    """End to end: a pool held at 5 units loses all five at once (the marketplace says
    they failed); the provisioner asks to replace each and the scaler proposes to grow
    the pool back, and the pool gets five new units."""
    services = fleet(nats_url, tmp_path, {"h100": POOL}, watcher_pools=True)
    prov = services[0]
    assert isinstance(prov, ProvisionerService)
    # Units that have run for a while (not a crash loop): every replacement is asked at once.
    prov.settings.provisioner.crash_loop_early_s = 0.1
    events = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    for svc in services:
        await svc.start()
    try:
        first = states(await events.until(lambda ev: len(states(ev, "ready")) >= 5, 30), "ready")
        failed_at = time.time()
        for sim_unit in prov.providers.get("sim")._units.values():  # type: ignore[union-attr]
            sim_unit.fails = True  # five machines die at the provider

        def back(ev: list[UnitEvent]) -> set[str]:
            return {e.unit for e in ev if e.state == "ready" and e.ts > failed_at} - first

        await events.until(lambda ev: len(back(ev)) >= 5, 60)

        async def settled() -> bool:
            """Every request (replacements, proposals) judged, every approval carried out."""
            cmds = await read(nc.jetstream(), "FLEET_CMDS", ">")
            asked = {json.loads(d)["id"] for s, d in cmds if not s.startswith("fleet.budget.")}
            said = {json.loads(d)["id"] for s, d in cmds if s.startswith("fleet.budget.")}
            reply = await nc.request(subjects.api("units.list"), b'{"pool": "h100"}', timeout=5)
            units = json.loads(reply.data)["units"]
            busy = [u for u in units if u["state"] in ("requested", "booting")]
            return asked <= said and not busy

        await eventually_async(settled, 30)
        made = {e.unit for e in events.items if e.state == "booting" and e.ts > failed_at}
        assert len(made) == 5, sorted(made)
        assert len(states(events.items, "failed") & first) == 5
    finally:
        await events.stop()
        for svc in reversed(services):
            await svc.stop()


async def eventually_async(check: Callable[[], Awaitable[bool]], within_s: float) -> None:
    give_up = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > give_up:
            raise AssertionError(f"condition not met in {within_s} s")
        await asyncio.sleep(0.2)
