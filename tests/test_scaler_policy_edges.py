"""The scaler's decide() at its edges: exact reason texts, re-proposal timing,
pending units, zero capacity and the forecast a proposal carries."""

from __future__ import annotations

import msgspec

from contracts.commands import ScaleProposal
from contracts.telemetry import PoolMetrics
from services.scaler.policy import Policy, PoolState, decide, learn_lead_time

# The rules here are tested without the up-slack band (it has its own test).
POLICY = Policy(
    target_utilization=0.7, min=1, max=100, unit_capacity=10.0, lead_time_s=60.0, up_slack=0.0
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


def test_a_scale_up_reason_names_direction_load_and_capacity() -> None:
    # 15 in flight on 2 units of 10: 75 % of 20; 3 units serve it at 70 %.
    _, p = decide(PoolState(), metrics(15.0, 2), POLICY, 100.0)
    assert p is not None
    assert p.reason == "Scale up 2 -> 3 units (steady): 15.0 in flight, 75% of 20 at target 70%."


def test_a_scale_in_reason_says_in() -> None:
    _, p = decide(PoolState(), metrics(0.0, 5), POLICY, 100.0)
    assert p is not None
    assert p.reason == (
        "Scale in 5 -> 1 units (steady): 0.0 in flight, 0% of 50 at target 70%; "
        "released after 150 s unneeded (this pool's hold, the default)."
    )


def test_a_pool_with_no_units_reports_no_capacity() -> None:
    _, p = decide(PoolState(), metrics(5.0, 0), POLICY, 100.0)
    assert p is not None
    assert (p.current, p.desired) == (0, 1)
    assert p.reason == (
        "Scale up 0 -> 1 units (steady): 5.0 in flight, no capacity of 0 at target 70%."
    )


def test_pending_units_count_as_the_current_pool() -> None:
    # 2 ready and 1 booting already serve 15 in flight: nothing to ask.
    _, p = decide(PoolState(), metrics(15.0, 2, pending=1), POLICY, 100.0)
    assert p is None
    # 50 in flight on 4 ready + 2 booting: 8 units, from 6.
    policy = Policy(
        target_utilization=0.7,
        unit_capacity=10.0,
        lead_time_s=60.0,
        panic_threshold=10.0,
        up_slack=0.0,
    )
    _, p = decide(PoolState(), metrics(50.0, 4, pending=2), policy, 100.0)
    assert p is not None
    assert (p.current, p.desired) == (6, 8)
    assert p.reason.startswith("Scale up 6 -> 8 units (steady)")


def test_a_proposal_and_the_state_carry_the_pool_time_and_sequence() -> None:
    state, p = decide(PoolState(), metrics(15.0, 2), POLICY, 100.0)
    assert p is not None
    assert (p.id, p.pool, p.ts) == ("scale:gpu-a:1", "gpu-a", 100.0)
    assert (state.pool, state.seq, state.last_up, state.last_down) == ("gpu-a", 1, 100.0, -1e999)
    assert not state.panic and state.panic_high == 0  # no burst, no high-water mark kept
    state, p = decide(state, metrics(0.0, 5), POLICY, 200.0)
    assert p is not None and p.id == "scale:gpu-a:2"
    assert (state.seq, state.last_up, state.last_down) == (2, 100.0, 200.0)


def test_an_unfulfilled_proposal_is_sent_again_exactly_after_repropose_s() -> None:
    state, p = decide(PoolState(), metrics(15.0, 2), POLICY, 0.0)
    assert p is not None and p.desired == 3
    sent = []
    t = 0.0
    while t < 30.0:
        t += 2.0
        state, p = decide(state, metrics(15.0, 2), POLICY, t)
        if p is not None:
            sent.append((t, p.desired, p.id))
    assert sent == [(30.0, 3, "scale:gpu-a:2")]


def test_a_changed_count_is_proposed_at_once_without_waiting_to_repropose() -> None:
    state, p = decide(PoolState(), metrics(15.0, 2), POLICY, 0.0)
    assert p is not None and p.desired == 3
    # Two seconds later the queue says 4 units (material from 2): sent at once.
    policy_no_panic = Policy(
        target_utilization=0.7, unit_capacity=10.0, lead_time_s=60.0, panic_threshold=10.0
    )
    state, p = decide(state, metrics(60.0, 2), policy_no_panic, 2.0)
    assert p is not None and p.desired > 3
    assert p.id == "scale:gpu-a:2"


def test_without_a_panic_window_silence_asks_for_nothing() -> None:
    # A zero-length panic window sees no samples: its mean is no demand at all.
    policy = Policy(target_utilization=0.7, min=0, unit_capacity=10.0, panic_window_s=0.0)
    state, p = decide(PoolState(), metrics(0.0, 0), policy, 100.0)
    assert p is None and state.last_desired == 0


def test_an_instant_boot_is_a_lead_time_of_zero() -> None:
    state = learn_lead_time(PoolState(), 0.0)
    assert state.learned_lead_s == 0.0
    state = learn_lead_time(PoolState(), 0.5)
    assert state.learned_lead_s == 0.5


def _ramp_proposals() -> list[ScaleProposal]:
    policy = Policy(target_utilization=0.7, unit_capacity=10.0, lead_time_s=300.0)
    state, units, t = PoolState(), 2, 0.0
    out: list[ScaleProposal] = []
    while t < 4800:
        demand = 10.0 + 0.05 * t if t < 3600 else 0.0
        state, p = decide(state, metrics(demand, units), policy, t)
        if p is not None:
            out.append(p)
            units = p.desired
        t += 2.0
    return out


def test_only_predictive_proposals_carry_a_forecast_and_say_it() -> None:
    proposals = _ramp_proposals()
    predictive = [p for p in proposals if p.mode == "predictive"]
    others = [p for p in proposals if p.mode != "predictive"]
    assert predictive and any(p.desired < p.current for p in others)
    for p in predictive:
        assert p.forecast is not None
        assert p.reason.endswith(f"; forecast {p.forecast:.1f} in flight in 300 s.")
    for p in others:
        assert p.forecast is None
        assert "forecast" not in p.reason


def test_the_forecast_is_rounded_to_three_decimals() -> None:
    forecasts = [p.forecast for p in _ramp_proposals() if p.forecast is not None]
    assert forecasts
    assert all(f == round(f, 3) for f in forecasts)
    # Not whole numbers: the rounding keeps the decimals.
    assert any(f != round(f) for f in forecasts)
    assert any(f != round(f, 2) for f in forecasts)


NO_PANIC = Policy(
    target_utilization=0.7,
    unit_capacity=10.0,
    lead_time_s=60.0,
    panic_threshold=10.0,
    cooldown_up_s=300.0,
)


def _after_a_scale_in(now: float) -> PoolState:
    return PoolState(pool="gpu-a", last_down=now - 10.0, last_desired=2)


def test_queueing_scales_up_at_once_even_within_the_cooldown() -> None:
    # 30 in flight on 2 units of 10 queues 10: 5 units, despite a scale-in 10 s ago.
    _, p = decide(_after_a_scale_in(1000.0), metrics(30.0, 2), NO_PANIC, 1000.0)
    assert p is not None and (p.current, p.desired) == (2, 5)


def test_demand_exactly_at_capacity_is_not_queueing_and_waits_for_the_cooldown() -> None:
    # 20 in flight on 2 units of 10: full, nothing queued; 3 units would serve it
    # at 70 %, but a scale-in was 10 s ago and the up-cooldown is 300 s.
    _, p = decide(_after_a_scale_in(1000.0), metrics(20.0, 2), NO_PANIC, 1000.0)
    assert p is None


def test_queueing_sizes_from_the_short_window_not_the_stable_mean() -> None:
    state, t = PoolState(), 0.0
    for _ in range(30):  # 60 s at 5 in flight on 2 units
        state, _ = decide(state, metrics(5.0, 2), NO_PANIC, t)
        t += 2.0
    asked = []
    for _ in range(3):  # then 40 in flight: 20 queue
        state, p = decide(state, metrics(40.0, 2), NO_PANIC, t)
        if p is not None:
            asked.append(p.desired)
        t += 2.0
    assert asked and max(asked) >= 5


def test_a_rise_within_capacity_waits_for_the_stable_window() -> None:
    policy = Policy(
        target_utilization=0.7, min=5, unit_capacity=10.0, lead_time_s=60.0, panic_threshold=10.0
    )
    state, t = PoolState(), 0.0
    for _ in range(30):  # 60 s at 20 in flight on 5 units (40 %), the pool's minimum
        state, _ = decide(state, metrics(20.0, 5), policy, t)
        t += 2.0
    for _ in range(3):  # 45 in flight: 90 %, but nothing queues
        state, p = decide(state, metrics(45.0, 5), policy, t)
        assert p is None
        t += 2.0


def test_the_state_forgets_the_burst_high_water_mark_once_panic_ends() -> None:
    state, t = PoolState(), 0.0
    for _ in range(30):
        state, _ = decide(state, metrics(20.0, 3), POLICY, t)
        t += 2.0
    state, burst = decide(state, metrics(180.0, 3), POLICY, t)
    assert burst is not None and state.panic and state.panic_high > 3
    while state.panic:
        t += 2.0
        state, _ = decide(state, metrics(20.0, 3), POLICY, t)
    state, _ = decide(state, metrics(20.0, 3), POLICY, t + 2.0)
    assert state.panic_high == 0


def test_a_scale_in_holds_the_spikes_of_the_last_lead_time_not_only_their_mean() -> None:
    # 10 units with 300 s of lead time: 60 s at 30 in flight (5 units), 60 s of 60
    # and 0 by turns (the mean still needs 5, the spikes 9), then 90 s of silence.
    # Unfulfilled, the scale-in is re-sent every 30 s; from the spikes on it keeps
    # 9 units, also in the silence, since the spikes are within one lead time.
    policy = Policy(target_utilization=0.7, unit_capacity=10.0, lead_time_s=300.0)
    state, t = PoolState(), 0.0
    asked = []
    for i in range(105):
        demand = 30.0 if i < 30 else (0.0 if i % 2 else 60.0) if i < 60 else 0.0
        state, p = decide(state, metrics(demand, 10), policy, t)
        if p is not None:
            asked.append((t, p.desired))
        t += 2.0
    assert asked == [(0.0, 5), (30.0, 5), (60.0, 5), (90.0, 9), (120.0, 9), (150.0, 9), (180.0, 9)]


def test_a_pool_below_its_minimum_is_raised_to_it_without_a_forecast() -> None:
    policy = Policy(target_utilization=0.7, min=3, unit_capacity=10.0)
    _, p = decide(PoolState(), metrics(0.0, 1), policy, 100.0)
    assert p is not None and (p.current, p.desired) == (1, 3)
    assert p.forecast is None
    assert p.reason.endswith("0.0 in flight, 0% of 10 at target 70%.")


def test_a_need_just_over_a_unit_boundary_does_not_buy_within_the_slack() -> None:
    # 22 in flight on 3 units of 10 at 70 %: 3.14 units' load, so 4 are needed.
    slack = Policy(
        target_utilization=0.7, min=1, max=100, unit_capacity=10.0, lead_time_s=60.0, up_slack=0.3
    )
    _, p = decide(PoolState(), metrics(22.0, 3), POLICY, 100.0)
    assert p is not None and p.desired == 4
    _, p = decide(PoolState(), metrics(22.0, 3), slack, 100.0)
    assert p is None  # within 0.3 of a unit's load over the count: no action
    _, p = decide(PoolState(), metrics(24.0, 3), slack, 100.0)
    assert p is not None and p.desired == 4  # 3.43 units' load clears the slack
    # Requests queueing are never held back by the slack.
    _, p = decide(PoolState(), metrics(31.0, 3), slack, 100.0)
    assert p is not None and p.desired == 5


def test_a_scale_in_serves_the_last_hold_lead_times_of_demand() -> None:
    one = Policy(
        target_utilization=0.7,
        min=1,
        max=100,
        unit_capacity=10.0,
        lead_time_s=60.0,
        hold_lead_times=1.0,
    )
    longer = msgspec.structs.replace(one, hold_lead_times=2.5)
    downs: dict[str, float] = {}
    for name, policy in (("one", one), ("longer", longer)):
        state, units, t = PoolState(), 12, 0.0
        while t < 600.0:
            state, _ = decide(state, metrics(80.0, units), policy, t)
            t += 2.0
        while t < 1200.0:
            state, p = decide(state, metrics(20.0, units), policy, t)
            if p is not None and p.desired < units:
                downs[name] = t
                break
            t += 2.0
    # Load fell at 600 s: released after one lead time, or after two and a half.
    assert 600.0 + 58.0 <= downs["one"] < 600.0 + 150.0 <= downs["longer"] < 600.0 + 180.0


def test_the_hold_remembers_only_needs_that_can_still_bind() -> None:
    # The stored state stays small on a long steady load (it is written to the
    # store on every tick, and replayed millions of times in a sweep): a need
    # that a later, higher one covers can never bind a scale-in.
    state, t = PoolState(), 0.0
    for _ in range(300):  # ten minutes at 30 in flight: one need to remember
        state, _ = decide(state, metrics(30.0, 5), POLICY, t)
        t += 2.0
    assert [n for _, n in state.needs] == [5]
    for demand in [50.0] * 30 + [20.0] * 30:  # a rise, then a fall
        state, _ = decide(state, metrics(demand, 8), POLICY, t)
        t += 2.0
    needs = [n for _, n in state.needs]
    # Highest first, each later one lower: what a scale-in may still go down to.
    assert needs[0] == 8 and needs == sorted(set(needs), reverse=True)
