"""The scaler's decide(): steady, panic and predictive modes, as an operator sees them."""

from __future__ import annotations

import itertools
import math

import msgspec
import pytest

from contracts.telemetry import PoolMetrics
from services.scaler import rules
from services.scaler.forecast import predict
from services.scaler.policy import (
    Policy,
    PoolState,
    cost_quantile,
    decide,
    lead_time,
    learn_lead_time,
    same_history,
    state_from_bytes,
    state_from_parts,
    state_parts,
    state_to_bytes,
    units_for,
)

# The rules here are tested without the up-slack band (it has its own test).
POLICY = Policy(
    target_utilization=0.7,
    min=1,
    max=100,
    unit_capacity=10.0,
    lead_time_s=60.0,
    max_step_down=2,
    up_slack=0.0,
)


def metrics(demand: float, ready: int, pending: int = 0) -> PoolMetrics:
    inflight = min(demand, ready * 10.0)
    return PoolMetrics(
        pool="gpu-a",
        ts=0.0,
        units_ready=ready,
        units_pending=pending,
        inflight=inflight,
        queue_depth=demand - inflight,
    )


class Pool:
    """Applies every proposal at once (no lead time) and records the history."""

    def __init__(self, units: int, policy: Policy = POLICY) -> None:
        self.units = units
        self.policy = policy
        self.state = PoolState()
        self.changes: list[tuple[float, int, int, str]] = []  # (t, from, to, mode)

    def tick(self, demand: float, now: float) -> None:
        self.state, proposal = decide(self.state, metrics(demand, self.units), self.policy, now)
        if proposal is not None and proposal.desired != self.units:
            self.changes.append((now, self.units, proposal.desired, proposal.mode))
            self.units = proposal.desired

    def run(self, demand: float, start: float, seconds: float, tick: float = 2.0) -> float:
        t = start
        while t < start + seconds:
            self.tick(demand, t)
            t += tick
        return t


def test_steady_scale_up_names_the_numbers() -> None:
    # 45 in flight on 5 units of 10 is 90 % > scale_up_at: 7 units serve it at 70 %.
    state, proposal = decide(PoolState(), metrics(45.0, 5), POLICY, 1000.0)
    assert proposal is not None
    assert (proposal.current, proposal.desired, proposal.mode) == (5, 7, "steady")
    assert "5 -> 7" in proposal.reason and "45.0" in proposal.reason
    assert proposal.id == "scale:gpu-a:1"
    assert state.last_desired == 7


def test_a_change_smaller_than_the_material_step_is_not_proposed() -> None:
    # 150 in flight on 20 units of 10 needs 22 at 70 %: 2 more is 10 %, material;
    # 145 needs 21: one unit on twenty is noise the next minute undoes.
    _, proposal = decide(PoolState(), metrics(145.0, 20), POLICY, 1000.0)
    assert proposal is None
    _, proposal = decide(PoolState(), metrics(150.0, 20), POLICY, 1000.0)
    assert proposal is not None and proposal.desired == 22


def test_decide_is_deterministic() -> None:
    a = decide(PoolState(), metrics(45.0, 5), POLICY, 1000.0)
    b = decide(PoolState(), metrics(45.0, 5), POLICY, 1000.0)
    assert a == b


def test_oscillating_load_never_flaps_within_the_cooldowns() -> None:
    pool = Pool(3)
    t = 0.0
    for i in range(600):  # 20 minutes of load alternating every tick
        pool.tick(20.0 if i % 2 else 70.0, t)
        t += 2.0
    directions = [(c[0], c[2] > c[1]) for c in pool.changes]
    for (t1, up1), (t2, up2) in itertools.pairwise(directions):
        if up1 != up2:
            cooldown = POLICY.cooldown_down_s if up1 else POLICY.cooldown_up_s
            assert t2 - t1 >= cooldown
    # And it settles: after the first minutes nothing changes any more.
    assert all(c[0] < 180 for c in pool.changes), pool.changes


def test_a_3x_step_triggers_panic_within_one_tick() -> None:
    pool = Pool(3)
    t = pool.run(20.0, 0.0, 300.0)
    assert pool.units == 3
    pool.tick(60.0 * 3, t)  # 3x the 3 units' full capacity
    assert pool.changes[-1][0] == t
    assert pool.changes[-1][3] == "panic"
    assert pool.units == units_for(180.0, POLICY)


def test_leaving_panic_keeps_the_high_water_mark() -> None:
    pool = Pool(3)
    t = pool.run(20.0, 0.0, 300.0)
    t = pool.run(180.0, t, 20.0)
    high = pool.units
    assert high == 26
    burst_end = t
    burst_seen = pool.state.panic_since  # the last tick the burst condition held
    # Load falls back to 90 in flight: 35 % of the high-water capacity.
    t = pool.run(90.0, t, 600.0)
    assert not pool.state.panic
    downs = [c for c in pool.changes if c[0] >= burst_end]
    # Nothing is undone while panic lasts and then for one hold window (the
    # lead time: a unit released then would be back only a lead time later) ...
    hold_end = burst_seen + POLICY.stable_window_s + POLICY.lead_time_s
    assert all(c[0] >= hold_end for c in downs)
    assert downs, "the hold lowers it eventually"
    # ... then down to what 90 in flight needs (the forecast may still hold
    # headroom while the burst's trend fades), in one or two actions, not a ladder.
    assert len(downs) <= 2
    assert units_for(90.0, POLICY) <= pool.units <= units_for(90.0, POLICY) + 2


def test_panic_exit_tick_does_not_drop_the_count() -> None:
    pool = Pool(3)
    t = pool.run(20.0, 0.0, 100.0)
    t = pool.run(180.0, t, 4.0)
    assert pool.state.panic
    high = pool.units
    t = pool.run(0.0, t, POLICY.stable_window_s + 4.0)
    assert not pool.state.panic
    assert pool.units == high  # Knative #3153: exiting panic must not scale down


def test_no_scale_in_while_panicking() -> None:
    pool = Pool(3)
    t = pool.run(20.0, 0.0, 100.0)
    pool.run(180.0, t, 4.0)
    high = pool.units
    for i in range(20):
        pool.tick(0.0 if i % 2 else 180.0, t + 4.0 + 2.0 * i)
    assert pool.units >= high


def test_a_fall_in_load_is_followed_after_one_lead_time_or_the_paid_period() -> None:
    # Per-second billing: the scale-in waits one lead time after the last need.
    pool = Pool(12)
    t = pool.run(80.0, 0.0, 600.0)
    assert pool.units == units_for(80.0, POLICY)
    fall = t
    pool.run(20.0, t, 600.0)
    downs = [c for c in pool.changes if c[0] >= fall]
    assert downs and downs[0][0] >= fall + POLICY.lead_time_s
    assert pool.units == units_for(20.0, POLICY)
    # Hourly billing: a unit kept until its paid hour ends costs nothing more.
    hourly = msgspec.structs.replace(POLICY, billing_s=3600.0)
    pool = Pool(12, hourly)
    t = pool.run(80.0, 0.0, 600.0)
    fall = t
    pool.run(20.0, t, 3000.0)
    assert all(c[2] >= c[1] for c in pool.changes if c[0] >= fall)  # nothing released yet


def test_silence_scales_to_min() -> None:
    policy = Policy(target_utilization=0.7, min=2, max=100, unit_capacity=10.0)
    pool = Pool(3, policy)
    t = pool.run(300.0, 0.0, 300.0)
    assert pool.units > 10
    pool.run(0.0, t, policy.lead_time_s * policy.hold_lead_times + 60.0)  # past the hold
    assert pool.units == 2


def test_short_history_falls_back_to_steady() -> None:
    pool = Pool(1)
    for i in range(60):  # a steep ramp, but only two minutes of history
        pool.tick(2.0 * i, 2.0 * i)
    assert pool.changes
    assert {c[3] for c in pool.changes} <= {"steady", "panic"}


def test_predictive_scales_ahead_of_a_ramp() -> None:
    policy = Policy(target_utilization=0.7, unit_capacity=10.0, lead_time_s=300.0, up_slack=0.0)
    pool = Pool(2, policy)
    t = 0.0
    demand = 10.0
    while t < 3600:
        demand = 10.0 + 0.05 * t  # +3 requests in flight per minute
        pool.tick(demand, t)
        t += 2.0
    ups = [c for c in pool.changes if c[3] == "predictive"]
    assert ups
    # Each forecast step asks for more than the demand of its moment needs
    # (in material steps, so between two steps the pool may fall a little behind).
    for at, _, to, _ in ups:
        assert to > units_for(10.0 + 0.05 * at, policy)
    _, proposal = decide(pool.state, metrics(demand, pool.units - 2), policy, t)
    assert proposal is not None and proposal.forecast is not None
    assert proposal.forecast > demand


def test_forecast_never_scales_in() -> None:
    pool = Pool(2)
    t = 0.0
    while t < 3600:  # learn a rising ramp ...
        pool.tick(10.0 + 0.05 * t, t)
        t += 2.0
    pool.changes.clear()
    while t < 5400:  # ... then a falling one
        pool.tick(max(0.0, 190.0 - 0.1 * (t - 3600)), t)
        t += 2.0
    assert all(c[3] != "predictive" for c in pool.changes if c[2] < c[1])


def test_restarted_scaler_keeps_its_forecast() -> None:
    pool = Pool(2)
    t = pool.run(40.0, 0.0, 1800.0)
    restored = state_from_bytes(state_to_bytes(pool.state))
    assert restored == pool.state
    # Stored as two records (the slow part apart), or whole as before: the same state.
    light, history = state_parts(pool.state)
    assert history is not None
    assert state_from_parts(light, history) == pool.state
    assert len(light) < len(history)
    assert state_from_parts(state_to_bytes(pool.state), None) == pool.state
    assert predict(restored.forecast, t + 120) == predict(pool.state.forecast, t + 120)
    a = decide(pool.state, metrics(200.0, pool.units), POLICY, t)
    b = decide(restored, metrics(200.0, pool.units), POLICY, t)
    assert a == b


def test_the_forecasts_slow_part_changes_at_most_twice_a_minute() -> None:
    # What the scaler writes only when it changes: a bucket closing, an error kept.
    state, t, changed = PoolState(), 0.0, 0
    for _ in range(1200):  # twenty minutes, a decision a second
        new, _ = decide(state, metrics(20.0 + t % 7, 3), POLICY, t)
        changed += not same_history(state, new)
        state, t = new, t + 1.0
    assert state.forecast.profile and state.forecast.residuals
    assert 20 <= changed <= 2 * 20


def test_lead_time_is_learned_from_observed_boots() -> None:
    state = PoolState()
    assert lead_time(state, POLICY) == 60.0
    state = learn_lead_time(state, 200.0)
    assert lead_time(state, POLICY) == 200.0
    state = learn_lead_time(state, 100.0)
    assert math.isclose(lead_time(state, POLICY), 170.0)
    assert learn_lead_time(state, -5.0) == state
    assert learn_lead_time(state, math.nan) == state


def test_max_is_respected() -> None:
    policy = Policy(target_utilization=0.7, min=1, max=4, unit_capacity=10.0)
    _, proposal = decide(PoolState(), metrics(500.0, 2), policy, 0.0)
    assert proposal is not None and proposal.desired == 4


def test_a_denied_burst_is_asked_again_and_the_reason_says_it_is_held_not_bursting() -> None:
    state, t = PoolState(), 0.0
    for _ in range(50):  # calm on 3 units
        state, _ = decide(state, metrics(20.0, 3), POLICY, t)
        t += 2.0
    state, burst = decide(state, metrics(180.0, 3), POLICY, t)
    assert burst is not None and burst.mode == "panic" and "over 2x" in burst.reason
    # The cost-guard denied it: still 3 units while the burst fades.
    again = None
    while again is None and t < 600:
        t += 2.0
        state, again = decide(state, metrics(20.0, 3), POLICY, t)
    assert again is not None and again.desired == burst.desired and again.mode == "panic"
    assert "holding the burst's high-water mark" in again.reason
    assert "over 2x" not in again.reason


def test_the_tick_that_leaves_panic_says_it_holds_the_high_water_mark() -> None:
    policy = msgspec.structs.replace(POLICY, repropose_s=2.0)  # re-propose every tick
    state, t = PoolState(), 0.0
    for _ in range(50):
        state, _ = decide(state, metrics(20.0, 3), policy, t)
        t += 2.0
    state, burst = decide(state, metrics(180.0, 3), policy, t)
    assert burst is not None
    held = []  # proposals above the 3 units we have, once panic has ended
    end = t + policy.stable_window_s + 120.0
    while t < end:
        t += 2.0
        state, p = decide(state, metrics(20.0, 3), policy, t)
        if p is not None and not state.panic and p.desired > 3:
            held.append(p.reason)
    assert held, "the exit tick re-proposes the high-water mark"
    assert all("holding the burst's high-water mark" in r for r in held)
    assert not any("at target" in r for r in held)


# The named rules, each with plain values.


def test_newsvendor_quantile_is_the_critical_ratio() -> None:
    assert rules.newsvendor_quantile(20.0, 1.0) == pytest.approx(20 / 21)
    assert rules.newsvendor_quantile(1.0, 1.0) == 0.5
    assert rules.newsvendor_quantile(0.0, 1.0) == 0.0  # shortfall free: cover nothing extra
    assert rules.newsvendor_quantile(0.0, 0.0) == 0.5  # no costs given: the median
    # The default SLO weight covers demand 19 times in 20.
    assert cost_quantile(Policy(target_utilization=0.7)) == pytest.approx(0.952, abs=1e-3)


def test_upper_demand_adds_the_measured_error_and_never_lowers() -> None:
    assert rules.upper_demand(40.0, 10.0, 5.0) == 55.0
    assert rules.upper_demand(40.0, -30.0, 5.0) == 40.0  # a falling forecast keeps today's
    assert rules.upper_demand(40.0, 10.0, None) == 50.0  # no errors measured yet
    assert rules.upper_demand(40.0, -10.0, None) == 40.0


def test_units_for_serves_demand_at_the_target() -> None:
    assert rules.units_for(14.0 + 1e-9, 10.0, 0.7) == 2  # float dust is not a unit
    assert rules.units_for(14.1, 10.0, 0.7) == 3
    assert rules.units_for(0.0, 10.0, 0.7) == 0
    assert rules.units_for(-3.0, 10.0, 0.7) == 0


def test_quantile_interpolates_between_order_statistics() -> None:
    assert rules.quantile([], 0.9) == 0.0
    assert rules.quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert rules.quantile([0.0, 10.0], 0.95) == pytest.approx(9.5)
    assert rules.quantile([1.0, 2.0], 7.0) == 2.0  # q is clamped to 0..1


def test_hold_window_is_the_lead_time_or_the_billing_period() -> None:
    assert rules.hold_window_s(120.0, 1.0) == 120.0  # per-second billing: one lead time
    assert rules.hold_window_s(120.0, 3600.0) == 3600.0  # hourly: keep the paid hour
    assert rules.hold_window_s(120.0, 1.0, 2.5) == 300.0  # two and a half lead times


def test_material_change_is_a_unit_and_a_fraction_of_the_pool() -> None:
    assert rules.material(1, 5, 0.1)
    assert not rules.material(0, 5, 0.1)
    assert not rules.material(1, 20, 0.1)
    assert rules.material(-2, 20, 0.1)


def test_panic_step_enters_holds_and_leaves_with_its_high_water_mark() -> None:
    kw = {"threshold": 2.0, "exit_after_s": 60.0}
    calm = rules.Panic()
    # Demand needing 9 units on 3 ready: a burst.
    p, over = rules.panic_step(calm, 9, 3, 3, 100.0, **kw)
    assert over and p.active and p.high == 9 and p.since == 100.0
    # The burst stops showing: still panicking, the mark kept.
    p, over = rules.panic_step(p, 2, 9, 9, 130.0, **kw)
    assert not over and p.active and p.high == 9
    # 60 s after it was last seen, panic ends; the mark is handed over, not dropped.
    p, over = rules.panic_step(p, 2, 9, 9, 160.0, **kw)
    assert not over and not p.active and p.high == 9
    # Demand above the ready units but already asked for is not a burst.
    p, over = rules.panic_step(calm, 9, 3, 9, 100.0, **kw)
    assert not over and not p.active


def test_settle_scales_up_at_once_when_queueing_and_in_only_when_material() -> None:
    kw = {
        "since_change_s": 100.0,
        "since_down_s": 100.0,
        "cooldown_up_s": 0.0,
        "cooldown_down_s": 30.0,
        "min_change": 0.1,
    }
    # Requests queue: up to the need whatever its size.
    assert rules.settle(20, 21, 21, short_now=True, **kw) == 21
    # No queue: a one-unit rise on twenty is not material.
    assert rules.settle(20, 21, 21, short_now=False, **kw) == 20
    assert rules.settle(20, 23, 23, short_now=False, **kw) == 23
    # Scale-in to what the hold keeps, when material and out of cooldown.
    assert rules.settle(20, 10, 15, short_now=False, **kw) == 15
    assert rules.settle(20, 10, 19, short_now=False, **kw) == 20
    assert rules.settle(20, 10, 15, short_now=False, **{**kw, "since_change_s": 10.0}) == 20
    # A non-urgent rise waits out cooldown_up_s after a scale-in.
    slow = {**kw, "cooldown_up_s": 60.0, "since_down_s": 10.0}
    assert rules.settle(20, 23, 23, short_now=False, **slow) == 20
    assert rules.settle(20, 23, 23, short_now=True, **slow) == 23


def test_mode_names_what_raised_the_count() -> None:
    assert rules.mode_of(9, 3, 9, True) == "panic"
    assert rules.mode_of(9, 3, 7, False) == "predictive"
    assert rules.mode_of(7, 3, 7, False) == "steady"
    assert rules.mode_of(2, 3, 7, False) == "steady"


def test_a_state_stored_before_the_cost_rules_still_loads() -> None:
    # What the previous scaler stored: its stable-window recommendations (`recs`)
    # and no error history; a restarted scaler must carry on, not start over.
    old = msgspec.msgpack.encode(
        {"pool": "gpu-a", "seq": 7, "recs": [[10.0, 3]], "samples": [[10.0, 20.0]]}
    )
    state = state_from_bytes(old)
    assert (state.pool, state.seq, state.samples) == ("gpu-a", 7, ((10.0, 20.0),))
    _, proposal = decide(state, metrics(60.0, 5), POLICY, 12.0)
    assert proposal is not None and proposal.id == "scale:gpu-a:8"
