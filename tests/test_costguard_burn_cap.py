"""The burn cap binds at any hour, and a scaler's proposal gets the part that fits."""

from __future__ import annotations

import msgspec
import pytest

from contracts.commands import ProvisionRequest, ScaleProposal
from services.costguard.judge import decide, judge
from services.costguard.ledger import DAY_S, Ledger, reserved_rate
from services.costguard.settings import BudgetSettings, Policy
from services.kit.pools import PoolConfig

MIDNIGHT = 20_000 * DAY_S
LATE = MIDNIGHT + DAY_S - 1800  # half an hour before the UTC day ends


def policy(**budget: float | None) -> Policy:
    settings = {"daily_usd": 1000.0, "approval_threshold_usd_per_hour": 100.0, **budget}
    return Policy(
        budget=msgspec.convert(settings, BudgetSettings),
        pools={"h100": PoolConfig(gpu_model="H100", providers=["sim"], max_usd_per_hour=2.0)},
    )


def proposal(id: str, current: int, desired: int) -> ScaleProposal:
    return ScaleProposal(id=id, pool="h100", current=current, desired=desired, mode="panic")


def test_the_burn_cap_denies_even_when_the_day_is_almost_over() -> None:
    request = ProvisionRequest(id="r1", requester="op", pool="h100", count=10)
    _, verdict, audit = judge(Ledger(), request, policy(max_burn_usd_per_hour=10.0), LATE)
    assert verdict.decision == "denied"
    assert "burn cap of $10.00/h" in verdict.reason and "$20.00/h" in verdict.reason
    assert audit.result == "denied"
    _, verdict, _ = judge(Ledger(), request, policy(), LATE)
    assert verdict.decision == "approved"  # without a cap, half an hour left is cheap


def test_a_proposal_gets_the_units_that_fit_and_the_next_one_is_denied() -> None:
    ledger, verdict, _ = judge(
        Ledger(), proposal("p1", 0, 10), policy(max_burn_usd_per_hour=9.0), LATE
    )
    assert verdict.decision == "approved"
    assert verdict.command is not None and verdict.command.count == 4  # 4 x $2 <= $9
    assert "approved 4 of the 10 asked" in verdict.reason
    assert reserved_rate(ledger, LATE) == pytest.approx(8.0)
    ledger, again, _ = judge(ledger, proposal("p2", 0, 10), policy(max_burn_usd_per_hour=9.0), LATE)
    assert again.decision == "denied" and "burn cap" in again.reason
    assert reserved_rate(ledger, LATE) == pytest.approx(8.0)


def test_an_explicit_request_is_all_or_nothing() -> None:
    request = ProvisionRequest(id="r1", requester="brain", pool="h100", count=10)
    ledger, verdict, _ = judge(Ledger(), request, policy(max_burn_usd_per_hour=9.0), LATE)
    assert verdict.decision == "denied"
    assert reserved_rate(ledger, LATE) == 0.0


def test_a_proposal_is_cut_to_the_daily_budget_too() -> None:
    noon = MIDNIGHT + DAY_S / 2  # 12 h left: each $2/h unit costs $24 by midnight
    _, verdict, _ = judge(Ledger(), proposal("p1", 0, 10), policy(daily_usd=100.0), noon)
    assert verdict.decision == "approved"
    assert verdict.command is not None and verdict.command.count == 4  # 4 x $24 <= $100
    assert verdict.projected_today_usd <= 100.0


def test_an_operator_cannot_approve_past_the_burn_cap() -> None:
    p = policy(max_burn_usd_per_hour=30.0, approval_threshold_usd_per_hour=5.0)
    request = ProvisionRequest(id="big", requester="op", pool="h100", count=10)
    ledger, held, _ = judge(Ledger(), request, p, LATE)
    assert held.decision == "held"
    tighter = policy(max_burn_usd_per_hour=10.0, approval_threshold_usd_per_hour=5.0)
    _, verdict, _ = decide(ledger, "big", True, "alice", "", tighter, LATE + 60)
    assert verdict.decision == "denied" and "burn cap" in verdict.reason
