"""The scaler's decide(): steady, panic and predictive modes, as an operator sees them."""

from __future__ import annotations

import itertools
import math

import msgspec

from contracts.telemetry import PoolMetrics
from services.scaler.forecast import predict
from services.scaler.policy import (
    Policy,
    PoolState,
    decide,
    lead_time,
    learn_lead_time,
    state_from_bytes,
    state_to_bytes,
    units_for,
)

POLICY = Policy(min=1, max=100, unit_capacity=10.0, lead_time_s=60.0, max_step_down=2)


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


def test_inside_the_hysteresis_band_nothing_is_proposed() -> None:
    # 76 % utilization: above the 70 % target but below scale_up_at (80 %).
    _, proposal = decide(PoolState(), metrics(38.0, 5), POLICY, 1000.0)
    assert proposal is None


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
    # Load falls back to 90 in flight: 35 % of the high-water capacity.
    t = pool.run(90.0, t, 600.0)
    assert not pool.state.panic
    downs = [c for c in pool.changes if c[0] >= burst_end]
    # Nothing is undone while the stable window still remembers the burst ...
    stable_end = burst_end + POLICY.stable_window_s
    assert all(c[0] >= stable_end for c in downs)
    assert downs, "the stabilized path lowers it eventually"
    # ... and it comes down in steps, never straight back.
    assert all(c[1] - c[2] <= POLICY.max_step_down for c in downs)
    # Down to what 90 in flight needs (the forecast may still hold one unit
    # of headroom while the burst's trend fades).
    assert units_for(90.0, POLICY) <= pool.units <= units_for(90.0, POLICY) + 1


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


def test_silence_scales_to_min() -> None:
    policy = Policy(min=2, max=100, unit_capacity=10.0)
    pool = Pool(3, policy)
    t = pool.run(300.0, 0.0, 300.0)
    assert pool.units > 10
    pool.run(0.0, t, 300.0)
    assert pool.units == 2


def test_short_history_falls_back_to_steady() -> None:
    pool = Pool(1)
    for i in range(60):  # a steep ramp, but only two minutes of history
        pool.tick(2.0 * i, 2.0 * i)
    assert pool.changes
    assert {c[3] for c in pool.changes} <= {"steady", "panic"}


def test_predictive_scales_ahead_of_a_ramp() -> None:
    policy = Policy(unit_capacity=10.0, lead_time_s=300.0)
    pool = Pool(2, policy)
    t = 0.0
    demand = 10.0
    modes = set()
    while t < 3600:
        demand = 10.0 + 0.05 * t  # +3 requests in flight per minute
        pool.tick(demand, t)
        t += 2.0
        modes |= {c[3] for c in pool.changes}
    assert "predictive" in modes
    # Ahead of the ramp: more than the current demand needs at the target.
    assert pool.units > units_for(demand, policy)
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
    assert predict(restored.forecast, t + 120) == predict(pool.state.forecast, t + 120)
    a = decide(pool.state, metrics(200.0, pool.units), POLICY, t)
    b = decide(restored, metrics(200.0, pool.units), POLICY, t)
    assert a == b


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
    policy = Policy(min=1, max=4, unit_capacity=10.0)
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
