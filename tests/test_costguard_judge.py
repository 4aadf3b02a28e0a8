"""The budget gate's decisions, with plain values: what gets approved, denied or
held, and why; what the ledger counts as spent, burning and reserved."""

from __future__ import annotations

import msgspec
import pytest

from contracts.commands import ProvisionRequest, ReleaseRequest, ScaleProposal
from contracts.events import UnitEvent
from services.costguard.judge import NotHeld, decide, expire, judge
from services.costguard.ledger import (
    DAY_S,
    Ledger,
    apply_unit_event,
    burn_rate,
    projected,
    reserved_rate,
    spent_today,
)
from services.costguard.quote import Quote
from services.costguard.settings import BudgetSettings, Policy
from services.kit.pools import PoolConfig

MIDNIGHT = 20_000 * DAY_S
NOON = MIDNIGHT + DAY_S / 2  # 12 hours left in the day


def policy(**budget: float) -> Policy:
    settings = {"daily_usd": 100.0, "approval_threshold_usd_per_hour": 10.0, **budget}
    return Policy(
        budget=msgspec.convert(settings, BudgetSettings),
        pools={
            "h100": PoolConfig(
                gpu_model="H100", providers=["sim", "vastai"], max_usd_per_hour=2.0, max=2000
            ),
            "small": PoolConfig(gpu_model="any", providers=["sim"], max_usd_per_hour=1.0, max=5),
        },
    )


def provision(id: str = "r1", count: int = 1, **kw: object) -> ProvisionRequest:
    """A provision request dated at NOON unless told otherwise: no wall clock here."""
    return ProvisionRequest(
        ts=float(kw.pop("ts", NOON)),  # type: ignore[arg-type]
        id=id,
        requester=str(kw.pop("requester", "brain")),
        pool=str(kw.pop("pool", "h100")),
        count=count,
        **kw,
    )  # type: ignore[arg-type]


def unit(
    unit_id: str, state: str, ts: float, usd: float = 2.0, cmd: str | None = None
) -> UnitEvent:
    return UnitEvent(
        pool="h100",
        unit=unit_id,
        state=state,
        usd_per_hour=usd,
        ts=ts,
        command_id=cmd,  # type: ignore[arg-type]
    )


def test_a_small_provision_within_budget_is_approved_and_reserved() -> None:
    ledger, verdict, audit = judge(Ledger(), provision(count=2), policy(), NOON)
    assert verdict.decision == "approved"
    assert verdict.command is not None and verdict.command.id == "r1"
    assert verdict.usd_per_hour == pytest.approx(4.0)
    assert verdict.projected_today_usd == pytest.approx(48.0)  # 4 $/h x 12 h
    assert "within the daily budget" in verdict.reason
    assert reserved_rate(ledger, NOON) == pytest.approx(4.0)
    assert audit.actor == "costguard" and audit.result == "approved"
    assert audit.cost_impact_usd_per_hour == pytest.approx(4.0)


def test_the_price_comes_from_the_cheapest_offer_and_caps_the_command() -> None:
    quote = Quote(provider="vastai", usd_per_hour=1.25, offer_id="ask-7")
    _, verdict, _ = judge(Ledger(), provision(count=4), policy(), NOON, quote)
    assert verdict.decision == "approved"
    assert verdict.usd_per_hour == pytest.approx(5.0)
    cmd = verdict.command
    assert isinstance(cmd, ProvisionRequest)
    assert (cmd.provider, cmd.max_usd_per_hour, cmd.offer_id) == ("vastai", 1.25, "ask-7")
    assert cmd.gpu_model == "H100"


def test_a_projection_over_the_daily_budget_is_denied() -> None:
    # 5 units x 2 $/h x 12 h = 120 $ > 100 $
    ledger = Ledger()
    after, verdict, _ = judge(
        ledger, provision(count=5), policy(approval_threshold_usd_per_hour=50), NOON
    )
    assert verdict.decision == "denied"
    assert "$120.00" in verdict.reason and "daily budget of $100.00" in verdict.reason
    assert reserved_rate(after, NOON) == 0.0


def test_spend_already_made_counts_against_the_budget() -> None:
    ledger = apply_unit_event(Ledger(), unit("u1", "ready", MIDNIGHT, usd=6.0), MIDNIGHT)
    # by noon: 72 $ spent, and u1 burns 6 $/h for 12 more hours -> 144 $ projected
    assert spent_today(ledger, NOON) == pytest.approx(72.0)
    _, verdict, _ = judge(ledger, provision(count=1), policy(daily_usd=200), NOON)
    assert verdict.decision == "approved"
    _, verdict, _ = judge(ledger, provision(count=1), policy(daily_usd=150), NOON)
    assert verdict.decision == "denied"
    assert verdict.spent_today_usd == pytest.approx(72.0)


def test_nothing_passes_the_hard_cap_not_even_a_person() -> None:
    pol = policy(daily_usd=50, hard_cap_usd=80, approval_threshold_usd_per_hour=100)
    # 3 x 2 x 12 = 72: over the budget, under the cap -> a person may decide
    ledger, verdict, _ = judge(Ledger(), provision(count=3), pol, NOON)
    assert verdict.decision == "held" and "hard cap" in verdict.reason
    # 4 x 2 x 12 = 96: over the cap -> denied outright
    _, verdict, _ = judge(Ledger(), provision("r2", count=4), pol, NOON)
    assert verdict.decision == "denied" and "hard cap of $80.00" in verdict.reason
    # meanwhile other spend fills the room: the approval is re-checked and denied
    busy = apply_unit_event(ledger, unit("u9", "ready", NOON, usd=2.0), NOON)
    _, verdict, _ = decide(busy, "r1", True, "alice", "", pol, NOON + 1)
    assert verdict.decision == "denied" and "at decision time" in verdict.reason


def test_above_the_threshold_a_person_decides() -> None:
    pol = policy(daily_usd=1000)
    ledger, verdict, _ = judge(Ledger(), provision(count=6), pol, NOON)  # 12 $/h > 10 $/h
    assert verdict.decision == "held"
    assert "fleet approve r1" in verdict.reason
    assert reserved_rate(ledger, NOON) == 0.0 and "r1" in ledger.held
    after, approved, audit = decide(ledger, "r1", True, "alice", "launch day", pol, NOON + 60)
    assert approved.decision == "approved" and approved.decided_by == "alice"
    assert reserved_rate(after, NOON + 60) == pytest.approx(12.0)
    assert audit.refs["decided_by"] == "alice"
    with pytest.raises(NotHeld):
        decide(after, "r1", True, "alice", "", pol, NOON + 61)


def test_a_rejected_or_forgotten_hold_is_denied() -> None:
    pol = policy(daily_usd=1000, hold_timeout_s=300)
    ledger, _, _ = judge(Ledger(), provision(count=6), pol, NOON)
    _, rejected, _ = decide(ledger, "r1", False, "bob", "too pricey", pol, NOON + 10)
    assert rejected.decision == "denied" and "rejected by bob (too pricey)" in rejected.reason
    still, none = expire(ledger, pol, NOON + 299)
    assert none == [] and "r1" in still.held
    gone, [(verdict, _)] = expire(ledger, pol, NOON + 301)
    assert verdict.decision == "denied" and "within 300 s" in verdict.reason
    assert gone.held == {}


def test_each_requester_has_its_own_rate_limit() -> None:
    pol = policy(daily_usd=10_000, rate_limit_per_min=3)
    ledger = Ledger()
    decisions = []
    for i in range(4):
        ledger, verdict, _ = judge(ledger, provision(f"a{i}", max_usd_per_hour=0.01), pol, NOON)
        decisions.append(verdict.decision)
    assert decisions == ["approved"] * 3 + ["denied"]
    assert "rate limit of 3 commands per minute" in verdict.reason
    _, other, _ = judge(ledger, provision("b0", requester="scaler"), pol, NOON)
    assert other.decision == "approved"
    _, later, _ = judge(ledger, provision("a9"), pol, NOON + 20)  # one token back after 20 s
    assert later.decision == "approved"


def test_releases_are_approved_without_budget_checks_but_audited_and_limited() -> None:
    ledger = apply_unit_event(Ledger(), unit("u1", "ready", MIDNIGHT, usd=50.0), MIDNIGHT)
    pol = policy(daily_usd=1, rate_limit_per_min=1)  # the fleet is far over budget
    rel = ReleaseRequest(id="x1", requester="brain", pool="h100", unit="u1")
    ledger, verdict, audit = judge(ledger, rel, pol, NOON)
    assert verdict.decision == "approved" and verdict.command == rel
    assert audit.cost_impact_usd_per_hour == pytest.approx(-50.0)
    _, again, _ = judge(ledger, msgspec.structs.replace(rel, id="x2"), pol, NOON)
    assert again.decision == "denied" and "rate limit" in again.reason


def test_a_proposal_becomes_a_provision_net_of_pending_units_or_a_release() -> None:
    pol = policy()
    up = ScaleProposal(id="p1", pool="h100", current=1, desired=4)
    ledger, verdict, _ = judge(Ledger(), up, pol, NOON)
    cmd = verdict.command
    assert verdict.decision == "approved" and isinstance(cmd, ProvisionRequest)
    assert (cmd.id, cmd.count, cmd.requester, cmd.max_usd_per_hour) == ("p1", 3, "scaler", 2.0)
    # the same wish again, before the units arrive: 3 are pending, one more is needed
    ledger, verdict, _ = judge(
        ledger, ScaleProposal(id="p2", pool="h100", current=1, desired=5), pol, NOON
    )
    assert isinstance(verdict.command, ProvisionRequest) and verdict.command.count == 1
    _, verdict, _ = judge(
        ledger, ScaleProposal(id="p3", pool="h100", current=1, desired=5), pol, NOON
    )
    assert verdict.decision == "denied" and "nothing to do" in verdict.reason
    _, verdict, _ = judge(
        ledger, ScaleProposal(id="p4", pool="h100", current=5, desired=2), pol, NOON
    )
    assert verdict.decision == "approved"
    assert isinstance(verdict.command, ReleaseRequest) and verdict.command.count == 3


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        (provision(count=-1), "count -1"),
        (provision(count=10**9), "count 1000000000"),
        (provision(pool="nope"), "unknown pool 'nope'"),
        (provision(provider="aws"), "unknown provider 'aws'"),
        (provision(max_usd_per_hour=float("nan")), "max_usd_per_hour nan"),
        (provision(id=""), "no id"),
        (provision(gpu_model="A100"), "runs H100"),
        (provision(pool="small", count=6), "from 1 to 5"),
        (ScaleProposal(id="s", pool="h100", current=0, desired=10**9), "desired 1000000000"),
        (ReleaseRequest(id="r", requester="b", pool="h100"), "neither"),
    ],
)
def test_bad_input_is_denied_with_a_reason_and_changes_nothing(
    request_: object, words: str
) -> None:
    ledger = apply_unit_event(Ledger(), unit("u1", "ready", MIDNIGHT), MIDNIGHT)
    ledger, _, _ = judge(ledger, provision("ok"), policy(), NOON)
    after, verdict, audit = judge(ledger, request_, policy(), NOON)  # type: ignore[arg-type]
    assert verdict.decision == "denied" and words in verdict.reason
    assert verdict.command is None and audit.result == "denied"
    assert after is ledger


def test_spend_accrues_by_the_second_between_billed_and_terminal_events() -> None:
    t0 = NOON
    ledger = Ledger()
    ledger = apply_unit_event(ledger, unit("u1", "requested", t0, usd=3.6), t0)
    assert burn_rate(ledger) == 0.0  # not billed until it boots
    ledger = apply_unit_event(ledger, unit("u1", "booting", t0 + 10, usd=3.6), t0 + 10)
    assert spent_today(ledger, t0 + 11) == pytest.approx(0.001)  # 3.6 $/h = 0.001 $/s
    ledger = apply_unit_event(ledger, unit("u1", "ready", t0 + 20, usd=3.6), t0 + 20)
    ledger = apply_unit_event(ledger, unit("u1", "terminated", t0 + 110, usd=3.6), t0 + 110)
    assert spent_today(ledger, t0 + 5000) == pytest.approx(0.1)  # 100 billed seconds
    assert burn_rate(ledger) == 0.0
    # a redelivered event changes nothing; a late billed event for an ended unit neither
    assert apply_unit_event(ledger, unit("u1", "terminated", t0 + 110, usd=3.6), t0 + 200) == ledger
    assert apply_unit_event(ledger, unit("u1", "ready", t0 + 20, usd=3.6), t0 + 200) == ledger


def test_a_new_utc_day_starts_from_zero_but_running_units_keep_billing() -> None:
    late = MIDNIGHT + DAY_S - 3600
    ledger = apply_unit_event(Ledger(), unit("u1", "ready", late, usd=1.0), late)
    assert spent_today(ledger, MIDNIGHT + DAY_S - 1) == pytest.approx(1.0, abs=1e-3)
    assert spent_today(ledger, MIDNIGHT + DAY_S + 1800) == pytest.approx(0.5)


def test_reservations_are_released_by_unit_events_or_time() -> None:
    pol = policy(reservation_timeout_s=600)
    ledger, _, _ = judge(Ledger(), provision("c1", count=2), pol, NOON)
    assert reserved_rate(ledger, NOON) == pytest.approx(4.0)
    ledger = apply_unit_event(ledger, unit("a", "booting", NOON + 30, cmd="c1"), NOON + 30)
    ledger = apply_unit_event(ledger, unit("a", "ready", NOON + 60, cmd="c1"), NOON + 60)
    assert reserved_rate(ledger, NOON + 60) == pytest.approx(2.0)
    assert burn_rate(ledger) == pytest.approx(2.0)
    before = projected(ledger, NOON + 60)
    ledger = apply_unit_event(ledger, unit("b", "failed", NOON + 70, cmd="c1"), NOON + 70)
    assert reserved_rate(ledger, NOON + 70) == 0.0 and ledger.reservations == {}
    assert projected(ledger, NOON + 70) < before
    ledger2, _, _ = judge(Ledger(), provision("c2", count=2), pol, NOON)
    assert reserved_rate(ledger2, NOON + 601) == 0.0
