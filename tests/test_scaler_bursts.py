"""Bursts too short to buy for: the scaler learns per pool whether units bought
at a burst's start would have been needed once ready, and buys only when so."""

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


def test_burst_step_follows_demand_against_what_the_pool_held_when_it_began() -> None:
    calm = rules.Burst()
    # The short window needs 6 units, the pool holds 3: a burst begins.
    b = rules.burst_step(calm, 6, 3, 14.0, 100.0)
    assert (b.since, b.base, b.level) == (100.0, 3, 14.0)
    # The pool grows meanwhile; the burst lasts while demand needs more than 3.
    assert rules.burst_step(b, 4, 8, 14.0, 110.0) == b
    # Back to what 3 units serve: over.
    assert rules.burst_step(b, 3, 8, 14.0, 120.0).since is None
    # Demand within what the pool holds is no burst.
    assert rules.burst_step(calm, 3, 3, 14.0, 130.0) == calm


def test_watch_step_asks_whether_a_burst_was_needed_once_units_would_be_ready() -> None:
    kw = {"lead_s": LEAD, "hold_s": 150.0, "keep": 3}
    watch: tuple[tuple[float, int, bool], ...] = ((0.0, 3, False), (100.0, 3, False))
    # Within the first lead time nothing counts: units bought then are not ready.
    w, done = rules.watch_step(watch, (), 9, 30.0, **kw)
    assert w == watch and done == ()
    # Once they would be, demand above the 3 units held means they were needed.
    w, done = rules.watch_step(w, (), 9, 70.0, **kw)
    assert w == ((0.0, 3, True), (100.0, 3, False))
    # A burst is done a hold window later; only the last `keep` outcomes stay.
    w, done = rules.watch_step(w, (False, False, False), 2, 211.0, **kw)
    assert w == ((100.0, 3, False),) and done == (False, False, True)


def test_needed_again_is_the_share_of_bursts_whose_units_would_have_served() -> None:
    assert rules.needed_again([False] * 4) == 1.0  # too few followed: buy, as reactive policies do
    assert rules.needed_again([False] * 19 + [True]) == pytest.approx(0.05)
    assert rules.needed_again([True, False] * 5) == 0.5


def test_worth_buying_is_the_newsvendor_test_for_one_unit() -> None:
    q = rules.newsvendor_quantile(20.0, 1.0)  # 95 %
    assert rules.worth_buying(0.05, q)  # needed 1 time in 20: 20 x 1/20 >= 1 x 19/20
    assert not rules.worth_buying(0.04, q)
    assert rules.worth_buying(1.0, 0.0) and not rules.worth_buying(0.99, 0.0)


def run_spikes(
    state: PoolState, units: int, start: float, spikes: int, every_s: float
) -> tuple[PoolState, list[int]]:
    """Spikes of 10 s to 6x the calm load, one every `every_s`, on a pool that
    holds what the mean load needs; units asked for never arrive. Returns the
    counts asked for above the pool."""
    asked: list[int] = []
    t = start
    for _ in range(spikes):
        for i in range(int(every_s / 2)):  # a 2 s tick: 10 s of spike, then calm
            demand = 120.0 if i < 5 else 20.0
            state, proposal = decide(state, metrics(demand, units), POLICY, t)
            if proposal is not None and proposal.desired > units:
                asked.append(proposal.desired)
            t += 2.0
    return state, asked


ISOLATED = 300.0
"""Seconds between isolated spikes: more than a lead time and a hold window."""


def mean(every_s: float) -> float:
    return (120.0 * 10 + 20.0 * (every_s - 10)) / every_s


def test_a_pool_whose_bursts_end_before_units_are_ready_stops_buying_for_them() -> None:
    units = units_for(mean(ISOLATED), POLICY)
    # The first bursts are bought, as a reactive policy would ...
    state, first = run_spikes(PoolState(), units, 0.0, 7, ISOLATED)
    assert first
    # ... and once the pool has seen that units bought for them serve nothing, no more.
    assert len(state.burst_outcomes) >= 5 and not any(state.burst_outcomes)
    t0 = 7 * ISOLATED
    for t in range(int(t0), int(t0) + 120, 2):  # a calm two minutes: the last panic ends
        state, _ = decide(state, metrics(20.0, units), POLICY, float(t))
    _, later = run_spikes(state, units, t0 + 120.0, 5, ISOLATED)
    assert later == []


def test_bursts_that_come_back_while_units_would_be_kept_are_bought() -> None:
    # One spike a minute: units bought for one serve the next ones.
    every = 60.0
    units = units_for(mean(every), POLICY)
    state, _ = run_spikes(PoolState(), units, 0.0, 20, every)
    assert len(state.burst_outcomes) >= 5 and all(state.burst_outcomes)
    _, later = run_spikes(state, units, 20 * every, 5, every)
    assert later


def test_a_burst_that_outlasts_the_lead_time_is_bought_even_after_short_ones() -> None:
    units = units_for(mean(ISOLATED), POLICY)
    state, _ = run_spikes(PoolState(), units, 0.0, 8, ISOLATED)
    # Now the load steps up and stays: bought once it has lasted a lead time.
    start = 8 * ISOLATED
    t, bought_at = start, None
    while t < start + 2 * LEAD and bought_at is None:
        state, proposal = decide(state, metrics(120.0, units), POLICY, t)
        if proposal is not None and proposal.desired > units:
            bought_at = t
        t += 2.0
    assert bought_at is not None and bought_at - start <= LEAD + 2.0


def test_step_seen_is_a_jump_beyond_the_busiest_sample_before_the_short_window() -> None:
    assert rules.step_seen(8, 4, 2.0)  # 2x what the busiest second before needed
    assert not rules.step_seen(7, 4, 2.0)
    assert rules.step_seen(2, 0, 2.0)  # from idle, two units' worth is a step
    assert not rules.step_seen(1, 0, 2.0)


def steady(state: PoolState, demand: float, units: int, t0: float, t1: float) -> PoolState:
    for t in range(int(t0), int(t1), 2):
        state, _ = decide(state, metrics(demand, units), POLICY, float(t))
    return state


def test_a_step_on_a_steady_pool_is_bought_on_its_first_sample() -> None:
    """`fleet bench loop`'s case: a pool at its target doubles its load. The first
    sample showing it is acted on, not the short window's mean a few seconds later."""
    target = POLICY.unit_capacity * POLICY.target_utilization
    state = steady(PoolState(), 4 * target, 4, 0.0, 60.0)
    state, proposal = decide(state, metrics(8 * target, 4), POLICY, 60.0)
    assert proposal is not None and proposal.desired >= 8, proposal


def test_a_spike_within_what_the_last_minute_saw_waits_for_the_short_window() -> None:
    """A noisy pool: one sample needing 10 units, well over twice the mean but under
    twice its busiest second of the last minute (6), is not taken as a step: the short
    window still judges it, and its mean needs no more than the pool holds."""
    target = POLICY.unit_capacity * POLICY.target_utilization
    state = PoolState()
    for i, t in enumerate(range(0, 60, 2)):  # a peak of 6 units' load every 10 s
        demand = 6 * target if i % 5 == 0 else 3 * target
        state, _ = decide(state, metrics(demand, 6), POLICY, float(t))
    state, proposal = decide(state, metrics(10 * target, 6), POLICY, 60.0)
    assert proposal is None or proposal.desired < 10, proposal


def test_step_watch_step_confirms_a_step_the_short_window_reaches_in_time() -> None:
    kw = {"window_s": 6.0, "threshold": 2.0, "keep": 3}
    watch = ((100.0, 4),)
    # The window's mean needs 6 units: not yet twice the 4 before it.
    assert rules.step_watch_step(watch, (), 6, 102.0, **kw) == (watch, ())
    # It needs 8 within the window: the step was real.
    assert rules.step_watch_step(watch, (), 8, 104.0, **kw) == ((), (True,))
    # The window passed without it: a spike.
    assert rules.step_watch_step(watch, (True,), 5, 106.5, **kw) == ((), (True, False))


def test_acting_early_pays_when_steps_are_usually_confirmed() -> None:
    q = rules.newsvendor_quantile(20.0, 1.0)  # w = 20
    # 6 s sooner x 20 against 420 s of rent for nothing: P >= 420 / (420 + 120).
    assert rules.early_pays(0.78, q, window_s=6.0, cost_s=420.0)
    assert not rules.early_pays(0.77, q, window_s=6.0, cost_s=420.0)
    assert rules.early_pays(1.0, 0.5, window_s=6.0, cost_s=420.0)  # nothing followed yet


def test_a_pool_whose_one_sample_steps_are_spikes_stops_acting_on_them() -> None:
    """One-sample spikes to 2x, every 80 s, on a pool of 4 units: the first are taken as
    steps and bought in full (nothing is known yet); then the pool has seen the short
    window never confirm one, and a spike is left to the short window, whose mean
    never needs the 8 units."""
    target = POLICY.unit_capacity * POLICY.target_utilization
    state = steady(PoolState(), 4 * target, 4, 0.0, 60.0)
    early: list[float] = []
    t = 60.0
    for _ in range(12):
        state, proposal = decide(state, metrics(8 * target, 4), POLICY, t)
        if proposal is not None and proposal.desired >= 8:
            early.append(t)
        state = steady(state, 4 * target, 4, t + 2.0, t + 80.0)
        t += 80.0
    assert early and early[-1] < 60.0 + 6 * 80.0, early
    assert len(state.step_outcomes) >= 5 and not any(state.step_outcomes[-5:])
