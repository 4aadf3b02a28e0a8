"""Bursts too short to buy for: the scaler learns per pool how long its bursts
last and buys units for one only when it will still be there when they are ready."""

from __future__ import annotations

import pytest

from contracts.telemetry import PoolMetrics
from services.scaler import rules
from services.scaler.policy import Policy, PoolState, decide, units_for

LEAD = 60.0
POLICY = Policy(min=1, max=100, unit_capacity=10.0, lead_time_s=LEAD)


def metrics(demand: float, ready: int) -> PoolMetrics:
    inflight = min(demand, ready * 10.0)
    return PoolMetrics(
        pool="gpu-a", ts=0.0, units_ready=ready, inflight=inflight, queue_depth=demand - inflight
    )


def test_burst_step_times_a_burst_against_what_the_pool_held_when_it_began() -> None:
    calm = rules.Burst()
    # The short window needs 6 units, the pool holds 3: a burst begins.
    b, ended = rules.burst_step(calm, 6, 3, 14.0, 100.0)
    assert (b.since, b.base, b.level, ended) == (100.0, 3, 14.0, None)
    # The pool grows meanwhile; the burst lasts while demand needs more than 3.
    b, ended = rules.burst_step(b, 4, 8, 14.0, 110.0)
    assert b.since == 100.0 and ended is None
    # Back to what 3 units serve: it ended, 20 s long.
    b, ended = rules.burst_step(b, 3, 8, 14.0, 120.0)
    assert b.since is None and ended == 20.0
    # Demand within what the pool holds is no burst.
    assert rules.burst_step(calm, 3, 3, 14.0, 130.0) == (calm, None)


def test_remember_keeps_the_last_durations() -> None:
    assert rules.remember((1.0, 2.0), None, 3) == (1.0, 2.0)
    assert rules.remember((1.0, 2.0, 3.0), 4.0, 3) == (2.0, 3.0, 4.0)
    assert rules.remember((), 5.0, 1) == (5.0,)


def test_outlast_probability_learns_from_the_pools_own_bursts() -> None:
    # Too few bursts seen: buy, as a reactive policy would.
    assert rules.outlast_probability([10.0] * 4, 0.0, LEAD) == 1.0
    # Twenty bursts of 10 s: a new one will not be there in a lead time.
    short = [10.0] * 20
    assert rules.outlast_probability(short, 0.0, LEAD) == 0.0
    # One burst in five outlasted the lead time: of those that lasted 5 s ...
    mixed = [10.0] * 16 + [600.0] * 4
    p = rules.outlast_probability(mixed, 5.0, LEAD)
    assert p == pytest.approx((4 + 4 / 20) / (20 + 1))
    # ... and once past every short one, the long ones decide.
    assert rules.outlast_probability(mixed, 30.0, LEAD) == pytest.approx((4 + 0.2) / 5)
    # Longer than any burst seen: judged by the pool's overall rate.
    assert rules.outlast_probability(short, 40.0, LEAD) == 0.0
    # A burst that has lasted a whole lead time is bought.
    assert rules.outlast_probability(short, LEAD, LEAD) == 1.0


def test_worth_buying_is_the_newsvendor_test_for_one_unit() -> None:
    q = rules.newsvendor_quantile(20.0, 1.0)  # 95 %
    assert rules.worth_buying(0.05, q)  # needed 1 time in 20: 20 x 1/20 >= 1 x 19/20
    assert not rules.worth_buying(0.04, q)
    assert rules.worth_buying(1.0, 0.0) and not rules.worth_buying(0.99, 0.0)


def run_spikes(
    state: PoolState, units: int, start: float, spikes: int
) -> tuple[PoolState, list[int]]:
    """Spikes of 10 s to 6x the calm load, one a minute, on a pool that holds
    what the mean load needs; units asked for never arrive (the lead time is
    longer than a spike). Returns the counts asked for."""
    asked: list[int] = []
    t = start
    for _ in range(spikes):
        for i in range(30):  # 60 s at a 2 s tick: 10 s of spike, 50 s of calm
            demand = 120.0 if i < 5 else 20.0
            state, proposal = decide(state, metrics(demand, units), POLICY, t)
            if proposal is not None and proposal.desired > units:
                asked.append(proposal.desired)
            t += 2.0
    return state, asked


MEAN = (120.0 * 10 + 20.0 * 50) / 60


def test_a_pool_whose_bursts_end_before_units_are_ready_stops_buying_for_them() -> None:
    units = units_for(MEAN, POLICY)
    state = PoolState()
    # The first bursts are bought, as a reactive policy would ...
    state, first = run_spikes(state, units, 0.0, 5)
    assert first
    # ... and once the pool has seen them end within seconds, no more.
    assert len(state.burst_durations) >= 5
    assert max(state.burst_durations) < LEAD
    for t in range(300, 420, 2):  # a calm two minutes: the last bought burst's panic ends
        state, _ = decide(state, metrics(20.0, units), POLICY, float(t))
    _, later = run_spikes(state, units, 420.0, 10)
    assert later == []


def test_a_burst_that_outlasts_the_lead_time_is_bought_even_after_short_ones() -> None:
    units = units_for(MEAN, POLICY)
    state, _ = run_spikes(PoolState(), units, 0.0, 10)
    # Now the load steps up and stays: bought once it has lasted a lead time.
    t, bought_at = 600.0, None
    while t < 600.0 + 2 * LEAD and bought_at is None:
        state, proposal = decide(state, metrics(120.0, units), POLICY, t)
        if proposal is not None and proposal.desired > units:
            bought_at = t
        t += 2.0
    assert bought_at is not None and bought_at - 600.0 <= LEAD + 2.0
