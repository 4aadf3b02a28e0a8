"""The named rules `decide()` chains, each a pure function of plain values.

Every rule answers one question an operator could ask about a scaling
decision, and is tested on its own (tests/test_scaler_policy.py):

- `newsvendor_quantile`: how sure must we be to cover demand, given what a
  unit costs and what a missing one costs?
- `upper_demand`: what demand, one lead time ahead, is exceeded only with
  the probability the cost trade-off accepts?
- `units_for`: how many units serve a demand at the target utilization?
- `hold_window_s` / `quantile`: what must a scale-in keep, knowing a released
  unit takes a lead time to come back and is billed by the period?
- `material` / `rise_fraction`: is a change big enough to be worth an action,
  and how big must a rise be when the target leaves little room above it?
- `burst_step` / `watch_step` / `needed_again` / `worth_buying`: is demand
  above what the pool holds, and, judging by this pool's past bursts, will
  it still be there (or back) when new units are ready?
- `jump_step` / `recurring_jump` / `worth_prebuying`: did load jump at this
  time of day on enough past days that buying before it comes pays?
- `panic_step`: is this a burst, and what does the burst's high-water mark say?
- `settle`: given all of the above, which count do we ask for, and why?
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import msgspec

from contracts.commands import ScaleMode
from services.scaler.forecast import DAY_S


def newsvendor_quantile(under_cost: float, over_cost: float) -> float:
    """q* = c_under / (c_under + c_over): the demand quantile that minimises the
    expected cost of one more unit, the classic newsvendor critical ratio.

    `under_cost` is what one under-provisioned unit-second costs, `over_cost`
    what one idle unit-second costs (its price); both >= 0, in the same money.
    """
    total = under_cost + over_cost
    if total <= 0:
        return 0.5
    return min(1.0, max(0.0, under_cost / total))


def upper_demand(now: float, rise: float, error_q: float | None) -> float:
    """Demand one lead time ahead at the cost quantile, requests in flight.

    `now` is the measured demand, `rise` the forecaster's expected change over
    the lead time, `error_q` its measured error at the quantile (None while it
    has too few errors to say). A forecast only ever raises capacity: the
    answer is never below what is measured now.
    """
    if error_q is None:
        return now + max(0.0, rise)
    return max(now, now + rise + error_q)


def units_for(demand: float, unit_capacity: float, target_utilization: float) -> int:
    """Units that serve `demand` requests in flight at the target utilization."""
    if demand <= 0:
        return 0
    per_unit = unit_capacity * target_utilization
    # Tolerate float dust: 14.000000001 / 7 must not become 3 units.
    return math.ceil(demand / per_unit - 1e-9)


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of `values`, linear between order statistics; 0 if empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = min(max(q, 0.0), 1.0) * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def hold_window_s(lead_s: float, billing_s: float, leads: float = 1.0) -> float:
    """How far back a scale-in looks for demand that would need the unit again.

    A unit released now cannot serve again before one lead time has passed, so
    demand seen within the last `leads` lead times is likely within the next
    one, and releasing for it costs twice (the shortfall, then the unit
    re-bought). With billing by a period longer than that, a unit kept until
    its period ends costs nothing more, so the window is the longer of the two.
    """
    return max(lead_s * max(1.0, leads), billing_s)


def material(delta: int, current: int, fraction: float) -> bool:
    """A change of `delta` units from `current` is worth an action: at least one
    unit and at least `fraction` of the pool, so noise-sized steps that the
    next minute undoes are never taken."""
    return abs(delta) >= max(1, math.ceil(fraction * current - 1e-9))


def rise_fraction(min_change: float, target_utilization: float, share: float) -> float:
    """The fraction of the pool a rise that is not urgent must reach to be taken:
    `min_change`, but never more than `share` of the headroom the target leaves
    above it (1 / target - 1 of the pool). A pool run at 90 % has 11 % of room
    before requests queue; a 10 % gate would spend nearly all of it waiting, so
    a ramp finds it short for the lead time the units then take to come. At a
    70 % target (43 % of room) the gate stays `min_change`."""
    if target_utilization <= 0:
        return min_change
    return min(min_change, share * max(0.0, 1.0 / target_utilization - 1.0))


class Burst(msgspec.Struct, frozen=True, kw_only=True):
    """A burst: demand (on the short window) needing more units than the pool
    held when it began. It lasts until that demand falls back to what the
    pool held then, whatever the pool did meanwhile."""

    since: float | None = None
    """When the burst began, seconds; None when there is none."""
    base: int = 0
    """Units the pool held (ready and pending) when it began."""
    level: float = 0.0
    """Demand the pool was sized for when it began (requests in flight)."""


def step_seen(need_now: int, need_before: int, threshold: float) -> bool:
    """A step in load, seen on one sample: demand now needs `threshold` times the units
    that the busiest sample of the stable window before the short one needed (at least
    one). A steady pool's 2x step reaches it on its first sample, without waiting for
    the short window's mean to catch up; a noisy pool's own peaks raise the bar, so
    there only a jump beyond anything the minute before saw does."""
    return need_now >= threshold * max(need_before, 1)


def step_watch_step(
    watch: tuple[tuple[float, int], ...],
    outcomes: tuple[bool, ...],
    short_need: int,
    now: float,
    *,
    window_s: float,
    threshold: float,
    keep: int,
) -> tuple[tuple[tuple[float, int], ...], tuple[bool, ...]]:
    """Follow each one-sample step (seen at, units needed before it) through the short
    window: it is confirmed once the window's mean needs `threshold` times what was
    needed before; one not confirmed within `window_s` was a spike. Steps whose
    window has passed become outcomes (the last `keep`)."""
    kept: list[tuple[float, int]] = []
    done = list(outcomes)
    for seen, before in watch:
        if short_need >= threshold * max(before, 1):
            done.append(True)
        elif now - seen > window_s:
            done.append(False)
        else:
            kept.append((seen, before))
    return tuple(kept), tuple(done[-keep:])


def early_pays(confirmed: float, q: float, *, window_s: float, cost_s: float) -> bool:
    """Act on a step at its first sample when that pays: a real step is served up to
    `window_s` sooner, worth w = q*/(1 - q*) unit-seconds of rent a second per unit;
    a spike buys units for nothing, rented `cost_s` (a lead time and a hold). So when
    P(confirmed) x w x window >= (1 - P) x cost; 78 % at the default weight (w = 20, a
    120 s lead time and a 300 s hold). `confirmed` is 1 before any step is followed,
    as a reactive policy would act."""
    w = q / max(1.0 - q, 1e-9)
    return confirmed * w * window_s >= (1.0 - confirmed) * cost_s - 1e-9


def burst_step(burst: Burst, need_now: int, current: int, level: float, now: float) -> Burst:
    """The burst state after this tick; `need_now` is the units the short
    window's demand needs, `level` the demand the pool is sized for."""
    if burst.since is None:
        if need_now > current:
            return Burst(since=now, base=current, level=level)
        return burst
    if need_now <= burst.base:
        return Burst()
    return burst


def watch_step(
    watch: tuple[tuple[float, int, bool], ...],
    outcomes: tuple[bool, ...],
    short_need: int,
    now: float,
    *,
    lead_s: float,
    hold_s: float,
    keep: int,
) -> tuple[tuple[tuple[float, int, bool], ...], tuple[bool, ...]]:
    """Follow each recent burst (start, units held then, needed again) through
    the time units bought at its start would have served, from one lead time
    after it to a hold window later: were more units than the pool held needed
    then? Bursts whose window has passed become outcomes (the last `keep`)."""
    kept: list[tuple[float, int, bool]] = []
    done = list(outcomes)
    for start, base, seen in watch:
        if now > start + lead_s + hold_s:
            done.append(seen)
            continue
        kept.append((start, base, seen or (now >= start + lead_s and short_need > base)))
    return tuple(kept), tuple(done[-keep:])


def needed_again(outcomes: Sequence[bool], min_bursts: int = 5) -> float:
    """The share of this pool's recent bursts whose demand was still there, or
    back, when units bought at their start would have been ready; 1 (buy, as a
    reactive policy would) before `min_bursts` have been followed."""
    if len(outcomes) < min_bursts:
        return 1.0
    return sum(outcomes) / len(outcomes)


def worth_buying(needed: float, q: float) -> bool:
    """Buy units for a burst when they will be needed once ready with at least
    the probability 1 - q*: the newsvendor test for one more unit (it pays when
    P(needed) x c_under >= (1 - P) x c_over, i.e. P >= 1 - q*). A burst that
    ends before new capacity is ready, and does not come back while it would
    be kept, is not worth buying: the units would come after it, billed, and
    serve nothing."""
    return needed >= 1.0 - q - 1e-12


class Panic(msgspec.Struct, frozen=True, kw_only=True):
    """Burst state: whether panicking, when the burst was last seen, its high-water mark."""

    active: bool = False
    since: float = -math.inf
    """Last time the burst condition held, seconds."""
    high: int = 0
    """Highest count asked for while panicking."""


def panic_step(
    panic: Panic,
    need: int,
    ready: int,
    current: int,
    now: float,
    *,
    threshold: float,
    exit_after_s: float,
) -> tuple[Panic, bool]:
    """The burst state after this tick, and whether the burst condition holds now.

    A burst is demand that needs `threshold` times the ready units (and more
    than the pool has). Panic ends only `exit_after_s` after the condition last
    held; the high-water mark is kept through the exit (no Knative #3153 drop).
    """
    over = need >= threshold * max(ready, 1) and need > current
    if over:
        high = max(panic.high, current, need) if panic.active else max(current, need)
        return Panic(active=True, since=now, high=high), True
    if panic.active and now - panic.since >= exit_after_s:
        return Panic(active=False, since=panic.since, high=panic.high), False
    if panic.active:
        return msgspec.structs.replace(panic, high=max(panic.high, current)), False
    return panic, False


def settle(
    current: int,
    need: int,
    keep: int,
    *,
    short_now: bool,
    since_change_s: float,
    since_down_s: float,
    cooldown_up_s: float,
    cooldown_down_s: float,
    min_change: float,
    min_rise: float | None = None,
) -> int:
    """The count to ask for from the up-need and the hold, with hysteresis.

    - Up to `need` at once when requests queue now (`short_now`); otherwise only
      when the rise is material (`min_rise` of the pool, by default `min_change`)
      and `cooldown_up_s` has passed since a scale-in.
    - Down to `keep` (which is never below `need`) only when the drop is
      material and `cooldown_down_s` has passed since any change.
    - Otherwise keep `current`.
    """
    if need > current:
        if short_now or (
            material(need - current, current, min_change if min_rise is None else min_rise)
            and since_down_s >= cooldown_up_s
        ):
            return need
        return current
    if keep < current and since_change_s >= cooldown_down_s:
        if material(current - keep, current, min_change):
            return keep
    return current


def mode_of(desired: int, current: int, reactive: int, panicking: bool) -> ScaleMode:
    """The mode a proposal reports: panic, predictive (above what is measured now), or steady."""
    if panicking:
        return "panic"
    if desired > current and desired > reactive:
        return "predictive"
    return "steady"


class Jump(msgspec.Struct, frozen=True, kw_only=True):
    """A jump in demand under way: the short window at `threshold` x the level
    before it, needing more units than that level."""

    since: float | None = None
    """When it began, seconds; None when there is none."""
    base: float = 0.0
    """The level before it, when it began (requests in flight)."""
    peak: float = 0.0
    """Highest short-window demand since it began."""
    recorded: bool = False
    """Already entered in the calendar (it lasted long enough to count)."""


def jump_step(
    jump: Jump,
    short_mean: float,
    level: float,
    jumps: tuple[tuple[float, float], ...],
    now: float,
    *,
    threshold: float,
    lasting_s: float,
    relevant: bool,
    keep_s: float,
    keep: int,
) -> tuple[Jump, tuple[tuple[float, float], ...]]:
    """Follow jumps in demand and enter each that lasted `lasting_s` in the
    calendar as (start time, peak / base). A jump begins when the short window
    holds `threshold` x the `level` before it and needs more units than that
    level (`relevant`); it ends when the short window falls below half way back.
    The calendar keeps `keep_s` seconds of jumps, at most `keep` of them."""
    since = jump.since
    if since is None:
        if relevant and level > 0 and short_mean >= threshold * level:
            return Jump(since=now, base=level, peak=short_mean), jumps
        return jump, jumps
    if short_mean < jump.base * (1.0 + (threshold - 1.0) / 2.0):
        return Jump(), jumps
    jump = msgspec.structs.replace(jump, peak=max(jump.peak, short_mean))
    if not jump.recorded and now - since >= lasting_s:
        fresh = tuple(j for j in jumps if j[0] > now - keep_s)
        jumps = (*fresh, (since, jump.peak / jump.base))[-keep:]
        jump = msgspec.structs.replace(jump, recorded=True)
    return jump, jumps


def recurring_jump(
    jumps: Sequence[tuple[float, float]],
    start: float,
    end: float,
    *,
    days_seen: int,
    min_days: int,
) -> tuple[float, float]:
    """How often load jumped at this time of day, and by how much.

    For each of the last `days_seen` days, did a jump that lasted begin
    between the times of day of `start` and `end`? Returns (share of those
    days, the median ratio of their jumps); (0, 0) before `min_days` such
    days. Load that jumps at the same time every day (scheduled jobs, daily
    pushes, a broadcast) is then bought before it comes, a lead time ahead,
    instead of being met a lead time late."""
    if days_seen < min_days:
        return 0.0, 0.0
    days: dict[int, float] = {}
    for begun, ratio in jumps:
        k = math.ceil((start - begun) / DAY_S)
        if 1 <= k <= days_seen and begun + k * DAY_S <= end:
            days[k] = max(days.get(k, 0.0), ratio)
    if len(days) < min_days:
        return 0.0, 0.0
    return len(days) / days_seen, quantile(list(days.values()), 0.5)


def worth_prebuying(share: float, *, weight: float, lead_s: float, early_s: float) -> bool:
    """Buy for a jump expected at a time of day when the shortfall it avoids
    pays for the units bought early: each unit costs `lead_s + early_s` seconds
    of rental before the jump, and saves `weight` x `lead_s` if it comes (the
    lead time a reactive policy would be short), so buy when
    share x weight x lead_s >= lead_s + early_s."""
    return share * weight * lead_s >= lead_s + early_s


def reneeded(
    needs: Sequence[tuple[float, int]], need: int, now: float, *, min_idle_s: float
) -> list[tuple[float, int]]:
    """Units needed again now after standing idle: (idle seconds, units) for
    each step of the `needs` staircase (time-ordered, each need above every
    later one) whose units `need` reaches again, idle for over `min_idle_s`.

    A unit above a step's successor and up to the step was last needed at the
    step's time, so `need` now ends that idle spell. These spells are what a
    scale-in bets on: a unit released during one is back only a lead time
    after it ends."""
    spells: list[tuple[float, int]] = []
    below = 0  # units of the next (later) step
    for t, units in reversed(needs):
        if below >= need:
            break
        count = min(units, need) - below
        if count > 0 and now - t > min_idle_s:
            spells.append((now - t, count))
        below = units
    return spells


def expire(
    needs: tuple[tuple[float, int], ...], cutoff: float
) -> tuple[tuple[tuple[float, int], ...], list[tuple[float, int]]]:
    """Drop the steps of the needs staircase from `cutoff` back: their units
    (above the next step's) stood idle the whole longest hold, so each goes
    down as a spell that did not end, (math.inf, units). Returns the steps
    kept and those spells."""
    k = bisect.bisect_right(needs, cutoff, key=lambda e: e[0])
    spells = [
        (math.inf, units - (needs[i + 1][1] if i + 1 < len(needs) else 0))
        for i, (_, units) in enumerate(needs[:k])
    ]
    return needs[k:], spells


def best_hold(
    spells: Sequence[tuple[float, int]], choices_s: Sequence[float], rebuy_s: float
) -> float:
    """The hold, among `choices_s`, that would have cost least on these idle
    spells (seconds, units; math.inf for one that never ended): the classic
    rent-or-buy trade of a unit left idle. Holding T through a spell of
    length I costs I unit-seconds when I <= T; otherwise the unit is released
    at T and, if its load comes back, costs `rebuy_s` (a lead time short, in
    unit-seconds at the SLO weight) on top. The shortest of equal costs wins."""
    best, best_cost = choices_s[0], math.inf
    for hold in choices_s:
        cost = 0.0
        for idle, units in spells:
            if idle <= hold:
                cost += units * idle
            else:
                cost += units * (hold + (rebuy_s if math.isfinite(idle) else 0.0))
        if cost < best_cost - 1e-9:
            best, best_cost = hold, cost
    return best
