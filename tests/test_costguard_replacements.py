"""A failed unit is answered twice, by the provisioner's replacement and by the scaler's
proposal for the short pool; in either order the pool gets its units back once (five
failed units are five new units, not ten)."""

from __future__ import annotations

from contracts.commands import ScaleProposal
from services.costguard.judge import judge
from services.costguard.ledger import Ledger, apply_unit_event
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
