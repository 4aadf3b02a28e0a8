"""How long a scale-in waits: the scaler learns per pool how long units once
needed stand idle before their load comes back, and holds for the time that
would have cost least (rent an idle unit, or release it and be short for a
lead time when its load returns)."""

from __future__ import annotations

import math

from contracts.telemetry import PoolMetrics
from services.scaler import rules
from services.scaler.policy import IDLE_MIN, Policy, PoolState, decide

LEAD = 60.0
POLICY = Policy(
    target_utilization=0.7, min=1, max=100, unit_capacity=10.0, lead_time_s=LEAD, up_slack=0.0
)


def test_reneeded_names_each_unit_needed_again_and_how_long_it_stood_idle() -> None:
    # Six units were needed at t=0, four at t=100, two at t=200 (the staircase
    # keeps each need above every later one).
    needs = ((0.0, 6), (100.0, 4), (200.0, 2))
    # Five units at t=500: units 1-2 idle since 200, 3-4 since 100, 5 since 0.
    assert rules.reneeded(needs, 5, 500.0, min_idle_s=60.0) == [(300.0, 2), (400.0, 2), (500.0, 1)]
    # Idle spells no longer than `min_idle_s` are not spells: the unit was in use.
    assert rules.reneeded(needs, 2, 210.0, min_idle_s=60.0) == []
    assert rules.reneeded(needs, 4, 230.0, min_idle_s=60.0) == [(130.0, 2)]
    # A need below what was last needed ends no spell.
    assert rules.reneeded(needs, 1, 500.0, min_idle_s=60.0) == [(300.0, 1)]
    assert rules.reneeded((), 3, 500.0, min_idle_s=60.0) == []


def test_best_hold_is_the_cheaper_of_renting_an_idle_unit_and_rebuying_it() -> None:
    choices = [60.0, 120.0, 240.0, 480.0]
    # Load that comes back after 200 s, every time: hold through the gap
    # (200 unit-s each) rather than release and be short (60 + 1200 each).
    assert rules.best_hold([(200.0, 1)] * 10, choices, rebuy_s=1200.0) == 240.0
    # Load that never comes back: every second held is wasted; the shortest.
    assert rules.best_hold([(math.inf, 1)] * 10, choices, rebuy_s=1200.0) == 60.0
    # A gap longer than a re-buy costs is not worth holding through either.
    assert rules.best_hold([(2000.0, 3)] * 10, choices, rebuy_s=1200.0) == 60.0
    # Mixed: 3 in 10 come back after 200 s; holding 240 costs
    # 3 x 200 + 7 x 240 = 2,280 against 10 x 60 + 3 x 1200 = 4,200.
    mixed = [(200.0, 1)] * 3 + [(math.inf, 1)] * 7
    assert rules.best_hold(mixed, choices, rebuy_s=1200.0) == 240.0
    # 1 in 10: 200 + 9 x 240 = 2,360 against 600 + 1200 = 1,800: release.
    rare = [(200.0, 1)] + [(math.inf, 1)] * 9
    assert rules.best_hold(rare, choices, rebuy_s=1200.0) == 60.0


def metrics(demand: float, units: int) -> PoolMetrics:
    inflight = min(demand, units * 10.0)
    return PoolMetrics(
        pool="gpu-a", ts=0.0, units_ready=units, inflight=inflight, queue_depth=demand - inflight
    )


def run_cycles(
    cycles: int, high_s: float, low_s: float
) -> tuple[PoolState, list[list[tuple[float, int, int]]], list[str]]:
    """Load at 2 units (14 in flight at 70 %) for `high_s`, then at 1 unit for
    `low_s`, again and again; the pool gets what it asks for at once. Returns
    the final state and, per cycle, the (seconds into the cycle, from, to) of
    each proposal, and every proposal's reason."""
    state, units, t = PoolState(), 2, 0.0
    changes: list[list[tuple[float, int, int]]] = []
    reasons: list[str] = []
    for _ in range(cycles):
        start, seen = t, []
        while t < start + high_s + low_s:
            demand = 14.0 if t < start + high_s else 5.0
            state, proposal = decide(state, metrics(demand, units), POLICY, t)
            if proposal is not None:
                seen.append((t - start, units, proposal.desired))
                reasons.append(proposal.reason)
                units = proposal.desired
            t += 2.0
        changes.append(seen)
    return state, changes, reasons


def test_a_pool_whose_load_comes_back_within_minutes_stops_releasing_between() -> None:
    # Load returns to a second unit every 10 minutes: the default hold (2.5
    # lead times, 150 s) releases it after each peak and buys it back late.
    state, changes, _ = run_cycles(IDLE_MIN + 4, high_s=60.0, low_s=540.0)
    assert (2, 1) in [(a, b) for _, a, b in changes[1]]
    # Once the pool has seen enough of these idle spells (540 s, well under
    # the 1,200 s a unit short for a lead time costs at the SLO weight), it
    # holds the second unit through them: no more scale-ins or re-buys.
    assert state.hold_leads is not None and state.hold_leads * LEAD >= 540.0
    assert changes[-1] == [] and changes[-2] == []


def test_a_pool_whose_load_does_not_come_back_releases_sooner() -> None:
    # Peaks 40 minutes apart: a unit held for the next one would idle longer
    # than a re-buy costs; holding 2.5 lead times wastes 1.5 of them each time.
    state, changes, reasons = run_cycles(IDLE_MIN + 3, high_s=60.0, low_s=2400.0)
    first = next(at for at, a, b in changes[1] if b < a)
    last = next(at for at, a, b in changes[-1] if b < a)
    assert state.hold_leads == 1.0
    assert first - 60.0 >= 2.5 * LEAD  # the default hold, before it has learned
    assert last - 60.0 <= 1.5 * LEAD  # released within about a lead time of idling
    released = [p for p in reasons if "released after 60 s unneeded" in p]
    assert released and "idle spells" in released[-1]
