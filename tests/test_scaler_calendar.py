"""Jumps that come at the same time every day are bought a lead time ahead:
the scaler keeps a calendar of the jumps in demand that lasted, and when
enough past days had one at this time of day for the units to pay, asks for
them before it comes (services/scaler/rules.py `jump_step`,
`recurring_jump`, `worth_prebuying`)."""

from __future__ import annotations

import random

from contracts.telemetry import PoolMetrics
from services.scaler import rules
from services.scaler.forecast import DAY_S
from services.scaler.policy import CALENDAR_WINDOW_S, Policy, PoolState, decide, units_for

DAY = DAY_S
LEAD = 60.0
POLICY = Policy(min=1, max=100, unit_capacity=10.0, lead_time_s=LEAD)
TICK = 10.0


def test_jump_step_records_a_jump_once_it_has_lasted() -> None:
    kw = {"threshold": 2.0, "lasting_s": 30.0, "keep_s": 3 * DAY, "keep": 4}
    calm = rules.Jump()
    # Twice the level, needing more units than it: a jump begins.
    j, cal = rules.jump_step(calm, 45.0, 20.0, (), 100.0, relevant=True, **kw)
    assert (j.since, j.base, j.peak, cal) == (100.0, 20.0, 45.0, ())
    # Twice the level but served by the units the level needs: no jump.
    assert rules.jump_step(calm, 45.0, 20.0, (), 100.0, relevant=False, **kw)[0] == calm
    # It lasts while above half way back (1.5x), keeps its peak, and enters
    # the calendar once it has lasted `lasting_s`, once.
    j, cal = rules.jump_step(j, 80.0, 20.0, (), 120.0, relevant=True, **kw)
    assert cal == () and j.peak == 80.0
    j, cal = rules.jump_step(j, 60.0, 20.0, cal, 130.0, relevant=True, **kw)
    assert cal == ((100.0, 4.0),) and j.recorded
    j, cal = rules.jump_step(j, 60.0, 20.0, cal, 140.0, relevant=True, **kw)
    assert cal == ((100.0, 4.0),)
    # Below half way back: over.
    j, cal = rules.jump_step(j, 29.0, 20.0, cal, 150.0, relevant=True, **kw)
    assert j.since is None and cal == ((100.0, 4.0),)
    # A short jump never enters the calendar.
    j, _ = rules.jump_step(calm, 45.0, 20.0, (), 200.0, relevant=True, **kw)
    j, cal = rules.jump_step(j, 25.0, 20.0, (), 220.0, relevant=True, **kw)
    assert j.since is None and cal == ()
    # The calendar forgets jumps older than `keep_s`.
    old = ((0.0, 3.0),)
    j, _ = rules.jump_step(calm, 45.0, 20.0, old, 4 * DAY, relevant=True, **kw)
    _, cal = rules.jump_step(j, 45.0, 20.0, old, 4 * DAY + 30, relevant=True, **kw)
    assert cal == ((4 * DAY, 2.25),)


def test_recurring_jump_counts_the_days_with_a_jump_at_this_time_of_day() -> None:
    ten = 10 * 3600.0
    jumps = [(d * DAY + ten + 20 * d, 3.0 + d) for d in range(4)]  # days 0-3, drifting 20 s
    now = 4 * DAY + ten - 100  # day 4, 100 s before ten o'clock
    share, ratio = rules.recurring_jump(jumps, now - 120, now + 180, days_seen=4, min_days=3)
    assert share == 1.0 and ratio == 4.5  # the median of 3, 4, 5, 6
    # Another time of day: nothing.
    assert rules.recurring_jump(jumps, now - 7200, now - 3600, days_seen=4, min_days=3) == (
        0.0,
        0.0,
    )
    # Two days of four are not a habit when three are asked for ...
    assert rules.recurring_jump(jumps[2:], now - 120, now + 180, days_seen=4, min_days=3) == (
        0.0,
        0.0,
    )
    # ... and a history shorter than that says nothing.
    assert rules.recurring_jump(jumps, now - 120, now + 180, days_seen=2, min_days=3) == (0.0, 0.0)
    # Three of six days.
    share, _ = rules.recurring_jump(jumps[1:], now - 120, now + 180, days_seen=6, min_days=3)
    assert share == 0.5


def test_worth_prebuying_weighs_the_early_rental_against_the_shortfall_avoided() -> None:
    # Weight 20, lead 120 s: a unit saves 2,400 unit-s of shortfall cost when
    # the jump comes and costs 360 s of rental bought early: share >= 15 %.
    assert rules.worth_prebuying(0.15, weight=20.0, lead_s=120.0, early_s=240.0)
    assert not rules.worth_prebuying(0.14, weight=20.0, lead_s=120.0, early_s=240.0)
    # A cheap shortfall needs a surer habit.
    assert not rules.worth_prebuying(0.5, weight=3.0, lead_s=120.0, early_s=240.0)


class Pool:
    """Units asked for are ready `LEAD` seconds later; a scale-in is at once."""

    def __init__(self, units: int) -> None:
        self.ready = units
        self.pending: list[float] = []
        self.state = PoolState()
        self.asked: list[tuple[float, int, str]] = []  # (t, count asked, reason)

    def tick(self, demand: float, now: float) -> None:
        self.ready += sum(1 for t in self.pending if t <= now)
        self.pending = [t for t in self.pending if t > now]
        inflight = min(demand, self.ready * POLICY.unit_capacity)
        m = PoolMetrics(
            pool="gpu-a",
            ts=now,
            units_ready=self.ready,
            units_pending=len(self.pending),
            inflight=inflight,
            queue_depth=demand - inflight,
        )
        self.state, proposal = decide(self.state, m, POLICY, now)
        if proposal is None:
            return
        total = self.ready + len(self.pending)
        if proposal.desired > total:
            self.pending += [now + LEAD] * (proposal.desired - total)
        elif proposal.desired < total:
            drop = total - proposal.desired
            while drop and self.pending:
                self.pending.pop()
                drop -= 1
            self.ready -= drop
        self.asked.append((now, proposal.desired, proposal.reason))


def run_days(
    jump_at: list[float], days: int, *, watch: tuple[float, float], pool: Pool | None = None
) -> list[int]:
    """Base load 20 in flight, a jump to 80 for 10 minutes at `jump_at[d]`
    (seconds into day d); returns the ready units at each tick of `watch`
    (start, end) on the last day."""
    pool = pool or Pool(units_for(20.0, POLICY))
    seen: list[int] = []
    t = 0.0
    while t < days * DAY:
        d = int(t // DAY)
        into = t - d * DAY
        demand = 80.0 if jump_at[d] <= into < jump_at[d] + 600 else 20.0
        pool.tick(demand, t)
        if d == days - 1 and watch[0] <= into < watch[1]:
            seen.append(pool.ready)
        t += TICK
    return seen


def test_a_jump_at_the_same_time_every_day_finds_its_units_ready() -> None:
    ten = 10 * 3600.0
    need = units_for(80.0, POLICY)
    # Four days with the jump at ten: on the fifth, the units are ready before it.
    pool = Pool(units_for(20.0, POLICY))
    before = run_days([ten] * 5, 5, watch=(ten - 20, ten), pool=pool)
    assert before and min(before) >= need
    # The proposal says why: the habit, its share of days and its size.
    ahead = [r for t, n, r in pool.asked if 4 * DAY + ten - 600 < t < 4 * DAY + ten and n >= need]
    assert ahead and "near this time of day on 100% of the last days" in ahead[0]
    assert "4.0x" in ahead[0]
    # The first days, with no habit yet, meet it a lead time late.
    first = run_days([ten] * 1, 1, watch=(ten, ten + LEAD - 20))
    assert first and max(first) < need


def test_jumps_at_random_times_buy_nothing_ahead_and_an_absent_jump_is_released() -> None:
    rng = random.Random(7)
    ten = 10 * 3600.0
    scattered = [rng.uniform(2 * 3600.0, 20 * 3600.0) for _ in range(5)]
    scattered[-1] = 22 * 3600.0  # the last day's jump is late, after the watch
    seen = run_days(scattered, 5, watch=(ten - 600, ten + 600))
    assert max(seen) == units_for(20.0, POLICY)
    # A habit that skips a day: bought ahead, then released once its time has
    # passed (not kept for a hold window as a real need would be).
    habit = [ten] * 4 + [22 * 3600.0]
    seen = run_days(habit, 5, watch=(ten - 20, ten + CALENDAR_WINDOW_S + LEAD + 60))
    assert max(seen) >= units_for(80.0, POLICY)
    assert seen[-1] < units_for(80.0, POLICY) // 2
