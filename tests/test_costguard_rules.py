"""The cost-guard's rules at their exact edges, with plain values and chosen hours:
a command exactly at a limit is allowed and a cent over is not; what a person's
decision and a timed-out hold say; how many units of a proposal fit."""

from __future__ import annotations

import msgspec
import pytest

from contracts.commands import ProvisionRequest, ReleaseRequest, ScaleProposal
from services.costguard.judge import MAX_UNITS, NotHeld, affordable_units, decide, expire, judge
from services.costguard.ledger import HOUR_S, Held, Ledger, Reservation, apply_unit_event, reserve
from tests.test_costguard_judge import MIDNIGHT, NOON, policy, provision, unit

LATE = MIDNIGHT + 23.5 * HOUR_S  # half an hour left in the UTC day


# -- the approval threshold ------------------------------------------------------------------
def test_a_command_exactly_at_the_approval_threshold_needs_nobody() -> None:
    pol = policy(daily_usd=1000, approval_threshold_usd_per_hour=10.0)
    _, at, _ = judge(Ledger(), provision(count=5), pol, NOON)  # 5 x 2 $/h = 10 $/h
    assert at.decision == "approved"
    _, over, _ = judge(
        Ledger(),
        provision(count=5, max_usd_per_hour=2.0),
        policy(daily_usd=1000, approval_threshold_usd_per_hour=9.99),
        NOON,
    )
    assert over.decision == "held"
    assert over.reason == (
        "Held: 5 x $2.00/h = $10.00/h takes the day to $120.00, within budget, but $10.00/h "
        "is above the approval threshold of $9.99/h; `fleet approve r1` or `fleet reject r1`."
    )


def test_the_verdicts_say_the_numbers_that_decided_them() -> None:
    _, ok, audit = judge(Ledger(), provision(count=2), policy(), NOON)
    assert ok.reason == (
        "Approved: 2 x $2.00/h = $4.00/h takes the day to $48.00, within the daily budget "
        "of $100.00."
    )
    assert (ok.usd_per_hour, ok.projected_today_usd, ok.budget_usd) == (4.0, 48.0, 100.0)
    assert (ok.spent_today_usd, ok.ts, ok.decided_by) == (0.0, NOON, "costguard")
    assert (audit.action, audit.result, audit.id, audit.ts) == (
        "approved ProvisionRequest",
        "approved",
        "r1:approved",
        NOON,
    )
    assert audit.reasoning == ok.reason and audit.actor == "costguard"
    assert audit.refs == {
        "request": "r1",
        "pool": "h100",
        "requester": "brain",
        "decided_by": "costguard",
    }
    _, no, audit = judge(
        Ledger(), provision(count=5), policy(approval_threshold_usd_per_hour=50), NOON
    )
    assert no.reason == (
        "Denied: 5 x $2.00/h = $10.00/h takes the day to $120.00, above the daily budget of "
        "$100.00 (also the hard cap)."
    )
    assert audit.cost_impact_usd_per_hour == 0.0  # only an approval commits money


def test_between_budget_and_cap_a_person_may_decide_and_the_verdict_says_so() -> None:
    pol = policy(daily_usd=50, hard_cap_usd=80, approval_threshold_usd_per_hour=100)
    ledger, held, _ = judge(Ledger(), provision(count=3), pol, NOON)  # 72 $ by midnight
    assert held.reason == (
        "Held: 3 x $2.00/h = $6.00/h takes the day to $72.00, above the daily budget of "
        "$50.00 but within the hard cap of $80.00; an operator must approve it."
    )
    assert ledger.held["r1"].pool == "h100" and ledger.held["r1"].units == 3
    assert held.command is not None and held.command.max_usd_per_hour == 2.0
    # the held units count as pending for the pool: a proposal does not ask for them again
    _, verdict, _ = judge(
        ledger, ScaleProposal(id="p1", pool="h100", current=0, desired=3), pol, NOON
    )
    assert verdict.decision == "denied" and "3 pending" in verdict.reason
    _, exact, _ = judge(
        Ledger(),
        provision(count=3),
        policy(daily_usd=72, approval_threshold_usd_per_hour=100),
        NOON,
    )
    assert exact.decision == "approved"  # exactly the budget is within it


def test_exactly_the_hard_cap_is_within_it() -> None:
    pol = policy(daily_usd=50, hard_cap_usd=72, approval_threshold_usd_per_hour=100)
    _, verdict, _ = judge(Ledger(), provision(count=3), pol, NOON)
    assert verdict.decision == "held"
    _, over, _ = judge(
        Ledger(),
        provision(count=3),
        policy(daily_usd=50, hard_cap_usd=71.99, approval_threshold_usd_per_hour=100),
        NOON,
    )
    assert over.reason == (
        "Denied: 3 x $2.00/h = $6.00/h takes the day to $72.00, above the hard cap of $71.99."
    )


# -- what fits -------------------------------------------------------------------------------
def test_affordable_units_fit_the_burn_cap_exactly() -> None:
    pol = policy(daily_usd=10_000, max_burn_usd_per_hour=6.0)
    assert affordable_units(Ledger(), 2.0, pol, NOON) == 3
    assert affordable_units(Ledger(), 2.01, pol, NOON) == 2
    assert affordable_units(Ledger(), 7.0, pol, NOON) == 0
    assert affordable_units(Ledger(), 0.5, pol, NOON) == 12
    assert affordable_units(Ledger(), 0.0, pol, NOON) == MAX_UNITS  # free units never bind


def test_affordable_units_count_burn_reservations_and_spend() -> None:
    burning = apply_unit_event(Ledger(), unit("u1", "ready", NOON, usd=2.0), NOON)
    reserved = reserve(
        burning, "c1", Reservation(pool="h100", units=1, usd_per_hour=1.0, expires_at=NOON + 60)
    )
    pol = policy(daily_usd=10_000, max_burn_usd_per_hour=10.0)
    assert affordable_units(reserved, 1.0, pol, NOON) == 7  # 10 - 2 burning - 1 reserved
    # the day's budget: 48 $ left by midnight at 12 h -> 4 $/h of room
    spent = apply_unit_event(Ledger(), unit("u2", "ready", MIDNIGHT, usd=1.0), MIDNIGHT)
    day = policy(daily_usd=12 + 12 + 48)  # 12 spent, 12 more at 1 $/h, 48 of room
    assert affordable_units(spent, 2.0, day, NOON) == 2
    # with half an hour left, the same 1 $ of room is 2 $/h
    assert affordable_units(Ledger(), 1.0, policy(daily_usd=1.0), LATE) == 2


def test_a_proposal_that_only_partly_fits_gets_the_part_and_says_so() -> None:
    pol = policy(daily_usd=10_000, max_burn_usd_per_hour=6.0, approval_threshold_usd_per_hour=100)
    ledger, verdict, _ = judge(
        Ledger(), ScaleProposal(id="p1", pool="h100", current=0, desired=5), pol, NOON
    )
    assert verdict.decision == "approved"
    assert isinstance(verdict.command, ProvisionRequest) and verdict.command.count == 3
    assert verdict.reason.endswith("(approved 3 of the 5 asked; the rest would exceed the budget).")
    assert ledger.reservations["p1"].units == 3


# -- people -------------------------------------------------------------------------------------
def held_ledger(command: ProvisionRequest | ReleaseRequest, rate: float) -> Ledger:
    held = Held(
        request=command,
        command=command,
        pool="h100",
        units=getattr(command, "count", 1) or 1,
        usd_per_hour=rate,
        expires_at=NOON + 900,
    )
    return Ledger(held={command.id: held})


def test_a_rejection_names_the_operator_and_their_note_only_when_given() -> None:
    ledger = held_ledger(provision(count=2), 4.0)
    _, plain, audit = decide(ledger, "r1", False, "bob", "", policy(), NOON)
    assert plain.reason == "Denied: rejected by bob."
    assert (plain.decided_by, audit.refs["decided_by"]) == ("bob", "bob")
    assert plain.command == provision(count=2) and plain.usd_per_hour == 4.0
    _, noted, _ = decide(ledger, "r1", False, "bob", "too pricey", policy(), NOON)
    assert noted.reason == "Denied: rejected by bob (too pricey)."


def test_a_person_may_approve_a_held_release() -> None:
    release = ReleaseRequest(id="x1", requester="brain", pool="h100", count=2)
    after, verdict, audit = decide(
        held_ledger(release, 0.0), "x1", True, "alice", "", policy(), NOON
    )
    assert (verdict.decision, verdict.reason, verdict.decided_by) == (
        "approved",
        "Approved by alice.",
        "alice",
    )
    assert verdict.command == release and verdict.request == release
    assert verdict.usd_per_hour == 0.0 and verdict.ts == NOON
    assert audit.cost_impact_usd_per_hour == 0.0
    assert after.held == {} and after.reservations == {}


def test_an_approval_is_checked_against_the_caps_at_decision_time_to_the_cent() -> None:
    ledger = held_ledger(provision(count=2), 4.0)
    burning = apply_unit_event(ledger, unit("u1", "ready", NOON, usd=2.0), NOON)
    reserved = reserve(
        burning, "c1", Reservation(pool="h100", units=1, usd_per_hour=1.0, expires_at=NOON + 60)
    )
    at_cap = policy(daily_usd=10_000, max_burn_usd_per_hour=7.0)  # 2 + 1 + 4 = 7
    after, ok, _ = decide(reserved, "r1", True, "alice", "", at_cap, NOON)
    assert ok.decision == "approved"
    assert ok.reason == (
        "Approved by alice: $4.00/h takes the day to $84.00, within the hard cap of $10000.00."
    )
    assert after.reservations["r1"].units == 2 and after.reservations["r1"].usd_per_hour == 2.0
    over = policy(daily_usd=10_000, max_burn_usd_per_hour=6.99)
    _, no, _ = decide(reserved, "r1", True, "alice", "go", over, NOON)
    assert no.reason == (
        "Denied: approved by alice (go), but at decision time it would commit the fleet to "
        "$7.00/h, above the burn cap of $6.99/h."
    )
    # the day's projection: 4 $/h x 12 h = 48 $, exactly the cap, is within it
    _, exact, _ = decide(ledger, "r1", True, "alice", "", policy(daily_usd=48), NOON)
    assert exact.decision == "approved"
    _, cent, _ = decide(ledger, "r1", True, "alice", "", policy(daily_usd=47.99), NOON)
    assert cent.reason == (
        "Denied: approved by alice, but at decision time $4.00/h takes the day to $48.00, "
        "above the hard cap of $47.99."
    )


def test_deciding_a_request_that_is_not_held_says_which() -> None:
    with pytest.raises(NotHeld) as err:
        decide(Ledger(), "nosuch", True, "alice", "", policy(), NOON)
    assert err.value.args == ("nosuch",)


def test_holds_expire_at_their_deadline_each_on_its_own() -> None:
    def hold(rid: str, expires_at: float) -> Held:
        return Held(
            request=provision(rid),
            command=provision(rid),
            pool="h100",
            units=1,
            usd_per_hour=2.0,
            expires_at=expires_at,
        )

    ledger = Ledger(held={"a": hold("a", NOON + 10), "b": hold("b", NOON)})  # "a" waits
    after, out = expire(ledger, policy(hold_timeout_s=900), NOON)
    assert [v.id for v, _ in out] == ["b"] and list(after.held) == ["a"]
    ((verdict, audit),) = out
    assert verdict.reason == "Denied: nobody approved it within 900 s of being held."
    assert verdict.command == provision("b") and verdict.usd_per_hour == 2.0
    assert audit.result == "denied"


# -- what a verdict carries -----------------------------------------------------------------------
def test_a_denial_commits_nothing_and_carries_the_command_it_refused() -> None:
    pol = policy(daily_usd=10_000, max_burn_usd_per_hour=4.0, approval_threshold_usd_per_hour=100)
    _, at_cap, _ = judge(Ledger(), provision(count=2), pol, NOON)  # exactly 4 $/h
    assert at_cap.decision == "approved"
    _, over, audit = judge(Ledger(), provision(count=3), pol, NOON)
    assert over.reason == (
        "Denied: 3 x $2.00/h would commit the fleet to $6.00/h, above the burn cap of $4.00/h."
    )
    assert isinstance(over.command, ProvisionRequest) and over.command.count == 3
    assert over.usd_per_hour == 6.0 and audit.cost_impact_usd_per_hour == 0.0
    _, capped, _ = judge(
        Ledger(), provision(count=5), policy(approval_threshold_usd_per_hour=50), NOON
    )
    assert isinstance(capped.command, ProvisionRequest) and capped.command.count == 5


def test_refused_input_and_rate_limits_cost_nothing_and_say_so() -> None:
    ledger = apply_unit_event(Ledger(), unit("u1", "ready", MIDNIGHT, usd=2.0), MIDNIGHT)
    _, bad, audit = judge(ledger, provision(pool="nope"), policy(), NOON)
    assert (bad.usd_per_hour, bad.spent_today_usd, bad.projected_today_usd) == (0.0, 24.0, 48.0)
    assert audit.id == "r1:denied" and audit.cost_impact_usd_per_hour == 0.0
    _, nameless, audit = judge(ledger, provision(id=""), policy(), NOON)
    assert nameless.decision == "denied" and audit.id is None
    _, idle, _ = judge(
        ledger, ScaleProposal(id="p0", pool="h100", current=2, desired=2), policy(), NOON
    )
    assert idle.reason == "Denied: nothing to do, pool h100 wants 2, has 2 and 0 pending."
    assert idle.usd_per_hour == 0.0 and idle.command is None
    pol = policy(rate_limit_per_min=1)
    limited, _, _ = judge(ledger, provision("a"), pol, NOON)
    _, again, _ = judge(limited, provision("b"), pol, NOON)
    assert again.reason == (
        "Denied: requester 'brain' is over its rate limit of 1 commands per minute; "
        "try again shortly."
    )
    assert again.command is not None and again.command.id == "b" and again.usd_per_hour == 0.0


def test_a_long_request_id_gives_an_audit_id_of_128_characters() -> None:
    long_id = "r" * 128
    _, _, audit = judge(Ledger(), provision(long_id), policy(), NOON)
    assert audit.id == long_id


def test_wire_figures_are_capped_at_the_contracts_largest_amount() -> None:
    pools = {"big": {"gpu_model": "any", "providers": ["sim"], "max_usd_per_hour": 2e7}}
    pol = msgspec.convert(
        {
            "budget": {"daily_usd": 1e9, "approval_threshold_usd_per_hour": 1e9},
            "pools": pools,
        },
        type(policy()),
    )
    ask = ProvisionRequest(id="huge", requester="op", pool="big", count=1, ts=NOON)
    _, verdict, audit = judge(Ledger(), ask, pol, NOON)  # 2e7 $/h x 12 h fits 1e9
    assert verdict.decision == "approved"
    assert verdict.usd_per_hour == 1e7 and audit.cost_impact_usd_per_hour == 1e7


def test_a_proposal_that_fits_whole_says_nothing_of_parts() -> None:
    pol = policy(daily_usd=10_000, max_burn_usd_per_hour=4.0, approval_threshold_usd_per_hour=100)
    _, whole, _ = judge(
        Ledger(), ScaleProposal(id="p1", pool="h100", current=0, desired=2), pol, NOON
    )
    assert whole.reason == (
        "Approved: 2 x $2.00/h = $4.00/h takes the day to $48.00, within the daily budget of "
        "$10000.00."
    )
    tight = policy(daily_usd=10_000, max_burn_usd_per_hour=2.0, approval_threshold_usd_per_hour=100)
    _, one, _ = judge(
        Ledger(), ScaleProposal(id="p2", pool="h100", current=0, desired=2), tight, NOON
    )
    assert one.decision == "approved" and "(approved 1 of the 2 asked;" in one.reason
    _, none, _ = judge(
        Ledger(),
        ScaleProposal(id="p3", pool="h100", current=0, desired=1),
        policy(daily_usd=10_000, max_burn_usd_per_hour=1.0),
        NOON,
    )
    assert none.decision == "denied" and "burn cap" in none.reason


# -- releases --------------------------------------------------------------------------------
def fleet_of(*prices: float) -> Ledger:
    ledger = Ledger()
    for i, price in enumerate(prices):
        ledger = apply_unit_event(ledger, unit(f"u{i}", "ready", NOON, usd=price), NOON)
    return ledger


def release_impact(ledger: Ledger, **what: object) -> float:
    rel = ReleaseRequest(id="x", requester="brain", pool="h100", ts=NOON, **what)  # type: ignore[arg-type]
    _, verdict, audit = judge(ledger, rel, policy(), NOON)
    assert verdict.decision == "approved" and verdict.usd_per_hour == 0.0
    assert verdict.reason.startswith("Approved: a release lowers cost (")
    return audit.cost_impact_usd_per_hour


def test_a_release_is_audited_with_the_burn_it_saves() -> None:
    ledger = fleet_of(2.0, 4.0, 6.0)
    assert release_impact(ledger, unit="u2") == -6.0
    assert release_impact(ledger, unit="gone") == 0.0
    assert release_impact(ledger, count=2) == -8.0  # two units at the pool's average
    assert release_impact(ledger, count=5) == -12.0  # no more than the pool has
    assert release_impact(Ledger(), count=2) == 0.0
    assert release_impact(fleet_of(1e7, 1e7), count=2) == -1e7  # the contract's floor


def test_a_reason_is_cut_to_the_contracts_4096_characters() -> None:
    _, verdict, audit = judge(Ledger(), provision(pool="x" * 5000), policy(), NOON)
    assert len(verdict.reason) == 4096 and verdict.reason.startswith("Denied: unknown pool 'xxx")
    assert audit.reasoning == verdict.reason
