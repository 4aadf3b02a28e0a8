"""How big a rise must be before the scaler buys it: a tenth of the pool, but
never more than a third of the room the target utilization leaves above it, so
a pool run hot is not caught short by a slow ramp while it waits."""

from __future__ import annotations

import pytest

from contracts.telemetry import PoolMetrics
from services.scaler import rules
from services.scaler.policy import RISE_HEADROOM_SHARE, Policy, PoolState, decide

CALM = {"since_change_s": 600.0, "since_down_s": 600.0, "cooldown_up_s": 0.0}


def test_the_rise_gate_is_a_tenth_of_the_pool_or_a_third_of_the_headroom() -> None:
    # At 70 % the target leaves 43 % of room: a tenth of the pool is well inside it.
    assert rules.rise_fraction(0.1, 0.7, 1 / 3) == 0.1
    # At 90 % only 11 % is left: the gate shrinks to a third of it.
    assert rules.rise_fraction(0.1, 0.9, 1 / 3) == pytest.approx(0.037, abs=1e-3)
    # At 100 % there is no room: any rise of a unit is material.
    assert rules.rise_fraction(0.1, 1.0, 1 / 3) == 0.0
    assert rules.material(1, 100, rules.rise_fraction(0.1, 1.0, 1 / 3))


def test_settle_takes_a_rise_at_the_rise_gate_and_a_fall_at_the_change_gate() -> None:
    kw = {**CALM, "cooldown_down_s": 30.0, "min_change": 0.1}
    # 100 -> 105 without a queue: below a tenth, so not taken on min_change alone...
    assert rules.settle(100, 105, 105, short_now=False, **kw) == 100
    # ...but taken where the rise gate is 4 %.
    assert rules.settle(100, 105, 105, short_now=False, min_rise=0.04, **kw) == 105
    assert rules.settle(100, 103, 103, short_now=False, min_rise=0.04, **kw) == 100
    # The rise gate does not make a scale-in easier: 100 -> 95 still waits.
    assert rules.settle(100, 90, 95, short_now=False, min_rise=0.04, **kw) == 100


def ramp_until_first_scale_up(policy: Policy) -> float:
    """A pool of 100 units sized for its load at `policy`'s target; load then rises
    0.5 % a minute. The utilization of the pool's capacity when the scaler first
    asks for more units."""
    cap = policy.unit_capacity
    start = 100 * cap * policy.target_utilization
    state, now = PoolState(), 0.0
    # An hour at the level first, so the forecaster and the hold have settled.
    while now < 3600.0:
        m = PoolMetrics(pool="hot", ts=now, units_ready=100, inflight=start)
        state, _ = decide(state, m, policy, now)
        now += policy.tick_s
    demand = start
    while demand < 100 * cap:
        demand = start * (1.0 + 0.005 * (now - 3600.0) / 60.0)
        inflight = min(demand, 100 * cap)
        m = PoolMetrics(
            pool="hot", ts=now, units_ready=100, inflight=inflight, queue_depth=demand - inflight
        )
        state, proposal = decide(state, m, policy, now)
        if proposal is not None and proposal.desired > 100:
            return demand / (100 * cap)
        now += policy.tick_s
    return demand / (100 * cap)


def test_a_pool_run_hot_buys_a_slow_ramp_before_it_has_used_a_third_of_its_room() -> None:
    hot = Policy(min=1, max=1000, unit_capacity=10.0, target_utilization=0.9, tick_s=10.0)
    util = ramp_until_first_scale_up(hot)
    # It asks for more before the ramp has used a third of the 10 points of room
    # between its 90 % target and a full pool; a 10 % gate waited until 97 %, with
    # a lead time still to wait for the units.
    room = 1.0 - hot.target_utilization
    assert util <= hot.target_utilization + room * RISE_HEADROOM_SHARE
