"""The scaler's policy settings and its pure decision, `decide()`.

`decide(state, metrics, policy, now) -> (state, proposal | None)` reads no
clock, draws no random number and does no I/O: the service feeds it every
PoolMetrics and stores the returned PoolState; `fleet replay` runs the very
same function in virtual time.

The count minimises expected cost (docs/adr/0008-cost-based-scaling.md): a
unit costs its price every second it is asked for; a unit-second of demand
above the ready units costs `slo_weight` times that. The newsvendor ratio of
the two gives the demand quantile to cover, q* = w / (w + 1), and the
forecaster's measured errors one lead time ahead give that quantile. The
chain, each step a named rule in `services.scaler.rules`:

- need: units for the q* demand one lead time ahead (a forecast only raises),
  with the forecaster's errors read at that minute of the hour;
- calendar: a jump in load that came at this time of day on enough of the
  last days for buying ahead to pay is bought a lead time before it comes;
- panic: a burst of `panic_threshold` x the ready units jumps at once and
  keeps its high-water mark through the exit (no Knative exit thrash);
- hold: a scale-in keeps what the q* demand of the last lead time (or billing
  period) needs, since a unit released now is back only a lead time later;
- settle: only material changes (`min_change_fraction`), cooldowns between
  directions, so the next minute does not undo this one.
"""

from __future__ import annotations

import bisect
import math
import operator
from typing import Any, TypeVar

import msgspec

from contracts.commands import ScaleMode, ScaleProposal
from contracts.telemetry import PoolMetrics
from services.scaler import forecast, rules
from services.scaler.forecast import ForecastState
from services.scaler.reasons import reason
from services.scaler.rules import Burst, Jump, Panic


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    """One pool's scaling settings: the scaler's view of the pool's config."""

    min: int = 1
    """Fewest units, also what silence scales to."""
    max: int = 100
    """Most units the scaler will ever propose."""
    unit_capacity: float = 8.0
    """Requests (or sessions) in flight one unit serves at full load."""
    target_utilization: float = 0.8
    """Fraction of a unit's capacity the count is sized to fill, at the demand
    quantile the SLO weight covers (so it is headroom on top of that quantile's).
    0.8 costs less than 0.7 at the same weight on every trace of the evaluation
    set, and leaves no more shortfall than the better baseline's default; chosen
    leave-one-out over 0.7, 0.8 and 0.85 (ADR 0008, revision 10). The sweep's
    aggressiveness knob."""
    slo_weight: float = 20.0
    """Cost of one under-provisioned unit-second, in unit-seconds of the unit's
    price. 20 makes the covered quantile q* = 20/21 ~ 95 %: the count covers the
    forecast's demand 19 times in 20. A unit-second short leaves a whole unit's
    load unserved, which for an inference pool is a user-visible failure; 20
    prices that at the rental of a unit for 20 s. Raise it for strict SLOs."""
    billing_s: float = 1.0
    """Billing granularity of the pool's provider, seconds (1: by the second,
    3600: by the hour). A scale-in holds for the longer of this and the lead
    time, since a unit released before its paid period ends saves nothing."""
    min_change_fraction: float = 0.1
    """Smallest change worth an action, as a fraction of the pool (at least one
    unit); smaller steps are what the next minute undoes. A change is taken at
    once whatever its size when requests queue."""
    scale_up_at: float = 0.8
    """Unused since ADR 0008 (the cost quantile decides); kept so configs load."""
    scale_down_at: float = 0.3
    """Unused since ADR 0008 (the hold rule decides); kept so configs load."""
    cooldown_up_s: float = 0.0
    """Seconds after a scale-in before a non-urgent scale-up; 0 because a late
    scale-up costs requests. Queueing, panic and forecasts are never delayed."""
    cooldown_down_s: float = 30.0
    """Seconds after any change before a scale-in."""
    stable_window_s: float = 60.0
    """Window whose mean demand is "now", seconds (KPA's 60 s); also how long
    panic lasts after the burst was last seen."""
    panic_window_s: float = 6.0
    """Short window watched for bursts, seconds (KPA's 10 % of the stable window)."""
    panic_threshold: float = 2.0
    """Panic when the panic window's demand needs this many times the ready units."""
    max_step_up: int = 1000
    """Most units one scale-up adds."""
    max_step_down: int = 10
    """Unused since ADR 0008 (a scale-in goes to what the hold keeps); kept so configs load."""
    lead_time_s: float = 120.0
    """Seconds from requesting a unit to it serving; replaced by the learned value
    once requested->ready times have been observed (`learn_lead_time`)."""
    forecast_margin: float = 0.0
    """Unused since ADR 0008 (the measured error quantile sizes the headroom);
    kept so configs load."""
    tick_s: float = 2.0
    """Seconds between metrics the policy is tuned for (the watcher's tick)."""
    up_slack: float = 0.5
    """Fraction of one unit's load at the target a need must exceed the count by
    before a scale-up that is not urgent (nothing queues); a scale-in needs the
    whole unit free. The band between keeps a need that straddles a unit
    boundary from buying and releasing in turn."""
    hold_lead_times: float = 2.5
    """How many lead times of past demand a scale-in must still serve (at least
    one: a released unit is back only a lead time later). Longer keeps a pool
    from releasing between the ups and downs of load that returns. 2.5 (300 s
    at a 120 s lead, the HPA's scale-down window) was chosen leave-one-out over
    1 and 2.5 on the evaluation set (ADR 0008)."""
    repropose_s: float = 30.0
    """Seconds after which an unfulfilled proposal is sent again."""
    rebuy_share: float = 1.0
    """Share of a unit short while a released unit whose load came back is
    re-bought (a lead time). The learned hold weighs an idle unit's rent
    against `slo_weight` x lead x this (`rules.best_hold`). 1, a whole unit,
    was chosen leave-one-out over 0.5 and 1 (ADR 0008, revision 4)."""


class PoolState(msgspec.Struct, frozen=True, kw_only=True):
    """What the scaler remembers about one pool; store it as msgspec (msgpack)."""

    pool: str = ""
    seq: int = 0
    """Proposals emitted; the next id is `scale:<pool>:<seq>`."""
    samples: tuple[tuple[float, float], ...] = ()
    """(time, demand) inside the longest window (stable, panic or hold)."""
    needs: tuple[tuple[float, int], ...] = ()
    """(time, units needed) inside the longest hold a pool may learn, each need
    not exceeded by a later one (so the first within a window is its highest,
    and each step's units above the next were last needed at its time): a
    scale-in never goes below a need seen within the hold, so it is never
    undone by a need already seen."""
    last_up: float = -math.inf
    last_down: float = -math.inf
    last_proposal_at: float = -math.inf
    last_desired: int | None = None
    panic: bool = False
    panic_since: float = -math.inf
    """Last time the panic condition held."""
    panic_high: int = 0
    """Highest count set while panicking."""
    learned_lead_s: float | None = None
    """EWMA of observed requested->ready seconds; None until one is seen."""
    forecast: ForecastState = msgspec.field(default_factory=ForecastState)
    error_q: tuple[float, float, float | None] = (-math.inf, -1.0, None)
    """(forecast.last_residual_at, q, the error quantile): the quantile computed
    when the errors last changed, so a tick does not sort them again."""
    whole_q: tuple[float, float, float | None] = (-math.inf, -1.0, None)
    """(when computed, q, `forecast.whole_quantile`), sorted again every
    `forecast.WHOLE_EVERY_S`."""
    error_shift: tuple[float, float] = (-math.inf, 0.0)
    """(the minute it is for, in unix minutes; `forecast.hour_shift` there): the
    hour's shape added to the error quantile, read again each minute."""
    burst: Burst = msgspec.field(default_factory=Burst)
    """The burst under way, if any (`rules.burst_step`)."""
    burst_watch: tuple[tuple[float, int, bool], ...] = ()
    """Recent bursts followed until units bought at their start would have
    served a hold window: (start, units held then, needed again since)."""
    burst_outcomes: tuple[bool, ...] = ()
    """For this pool's last `BURSTS` bursts followed through: were more units
    than the pool held needed again once units bought at its start would
    have been ready? What tells a burst worth buying for from one that ends
    before new capacity is ready and does not come back."""
    step_watch: tuple[tuple[float, int], ...] = ()
    """One-sample steps being followed through the short window: (seen at, units the
    busiest sample before needed) (`rules.step_watch_step`)."""
    step_outcomes: tuple[bool, ...] = ()
    """For this pool's last `BURSTS` one-sample steps: did the short window's mean
    confirm them within its length? What tells a step from a one-sample spike."""
    jump: Jump = msgspec.field(default_factory=Jump)
    """The jump in demand under way, if any (`rules.jump_step`)."""
    jumps: tuple[tuple[float, float], ...] = ()
    """The calendar: (start, peak / level before) of each jump that lasted,
    over the last `CALENDAR_DAYS` days (`rules.recurring_jump`)."""
    calendar: tuple[float, float, float] = (-math.inf, 0.0, 0.0)
    """(when computed, share of days, ratio): the calendar's answer for one
    lead time ahead, computed every `CALENDAR_EVERY_S`."""
    idle: tuple[tuple[float, int], ...] = ()
    """The last `IDLE_SPELLS` idle spells of units once needed: (seconds
    until needed again, or math.inf when not within the longest hold; units)."""
    hold_leads: float | None = None
    """The hold, in lead times, that would have cost least on `idle`
    (`rules.best_hold`); None until `IDLE_MIN` spells are known."""


_V = TypeVar("_V", float, int)

LEAD_WEIGHT = 0.3
"""EWMA weight of one observed requested->ready time."""
BURSTS = 64
"""Burst outcomes remembered per pool: enough for the share that decides
(1 - q*, 5 % at the default) to rest on a few bursts, few enough to follow a
pool whose load changes character within a day or two."""


CALENDAR_DAYS = 14
"""Days of jumps the calendar remembers: two weeks, so a daily habit shows
on enough days and one that stops is forgotten within a fortnight."""
CALENDAR_MIN_DAYS = 3
"""Days a jump must have come near the same time of day before it is
bought ahead: one or two coincidences are not a habit."""
CALENDAR_WINDOW_S = 120.0
"""How far from the same time of day a jump may come and still count, seconds:
units bought for it are ready this long before its usual time and kept this
long after."""
CALENDAR_EVERY_S = 20.0
"""Seconds between two readings of the calendar."""
JUMPS = 1024
"""Most jumps the calendar keeps."""
HOLD_CHOICES = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0)
"""Holds a pool may learn, in lead times; only those shorter than a re-buy
(`Policy.rebuy_share`) are tried, since holding an idle unit longer costs more
than releasing it and being short when its load comes back."""
RISE_HEADROOM_SHARE = 1 / 3
"""The most of the headroom above the target a rise that is not urgent may take
before it is bought (`rules.rise_fraction`): two thirds of the room are left for
demand to keep rising during the lead time the new units take. ADR 0008,
revision 5."""
IDLE_SPELLS = 256
"""Idle spells remembered per pool."""
IDLE_MIN = 8
"""Idle spells known before the learned hold replaces `hold_lead_times`."""


def learn_lead_time(state: PoolState, observed_s: float) -> PoolState:
    """Fold one observed requested->ready time (seconds) into the learned lead time."""
    if not math.isfinite(observed_s) or observed_s < 0:
        return state
    old = state.learned_lead_s
    new = observed_s if old is None else old + LEAD_WEIGHT * (observed_s - old)
    return msgspec.structs.replace(state, learned_lead_s=new)


def lead_time(state: PoolState, policy: Policy) -> float:
    """The lead time in use: learned when observed, else the policy's, seconds."""
    return state.learned_lead_s if state.learned_lead_s is not None else policy.lead_time_s


def units_for(demand: float, policy: Policy) -> int:
    """Units that serve `demand` requests in flight at the pool's target utilization."""
    return rules.units_for(demand, policy.unit_capacity, policy.target_utilization)


def _clamp(n: int, policy: Policy) -> int:
    return max(policy.min, min(policy.max, n))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


_TIME = operator.itemgetter(0)
_VALUE = operator.itemgetter(1)


def _values(series: tuple[tuple[float, _V], ...]) -> list[_V]:
    """The values of a (time, value) series, in order (a C loop: decide() runs every tick)."""
    return list(map(_VALUE, series))


def _cut(series: tuple[tuple[float, _V], ...], cutoff: float) -> int:
    """Index of the first entry of a time-ordered series later than `cutoff`."""
    return bisect.bisect_right(series, cutoff, key=_TIME)


def _since(series: tuple[tuple[float, _V], ...], cutoff: float) -> tuple[tuple[float, _V], ...]:
    """The entries of a time-ordered series later than `cutoff` (one binary search)."""
    return series[_cut(series, cutoff) :]


def cost_quantile(policy: Policy) -> float:
    """The demand quantile the pool covers: the newsvendor ratio of the SLO weight
    (cost of an under-provisioned unit-second) to the price of a unit-second."""
    return rules.newsvendor_quantile(policy.slo_weight, 1.0)


def decide(
    state: PoolState, metrics: PoolMetrics, policy: Policy, now: float
) -> tuple[PoolState, ScaleProposal | None]:
    """One scaling decision for one pool from its latest metrics; pure.

    A chain of the named rules in `services.scaler.rules`: observe, size the
    need at the cost quantile one lead time ahead, watch for bursts, size what
    a scale-in must hold, settle with hysteresis, then propose.
    """
    demand = max(0.0, metrics.inflight + metrics.queue_depth)
    ready = metrics.units_ready
    current = ready + metrics.units_pending
    lead = lead_time(state, policy)
    hold_s = rules.hold_window_s(lead, policy.billing_s, policy.hold_lead_times)
    q = cost_quantile(policy)

    # Observe: the windows of demand, and the forecaster.
    horizon = max(policy.stable_window_s, policy.panic_window_s, hold_s)
    samples = (*_since(state.samples, now - horizon), (now, demand))
    fc = state.forecast
    if fc.horizon_s != lead:
        fc = msgspec.structs.replace(fc, horizon_s=lead)
    fc = forecast.observe(fc, now, demand)
    stable = _since(samples, now - policy.stable_window_s)
    stable_mean = _mean(_values(stable))
    short_mean = _mean(_values(_since(samples, now - policy.panic_window_s)))
    # A step beyond anything the minute before saw counts on its first sample, as the
    # short window's demand, when acting before the short window confirms it pays:
    # this pool's past steps say how often the window did (`rules.early_pays`).
    steps, step_outcomes = rules.step_watch_step(
        state.step_watch,
        state.step_outcomes,
        units_for(short_mean, policy),
        now,
        window_s=policy.panic_window_s,
        threshold=policy.panic_threshold,
        keep=BURSTS,
    )
    need_now = units_for(demand, policy)
    if need_now >= policy.panic_threshold:
        cut = now - policy.panic_window_s
        # The samples before the short window (times < cut).
        before = stable[: bisect.bisect_left(stable, cut, key=_TIME)]
        busiest = max(_values(before), default=None)
        prior = units_for(busiest, policy) if busiest is not None else 0
        if busiest is not None and rules.step_seen(need_now, prior, policy.panic_threshold):
            if not steps:
                steps = ((now, prior),)
            confirmed = rules.needed_again(step_outcomes)
            if rules.early_pays(confirmed, q, window_s=policy.panic_window_s, cost_s=lead + hold_s):
                short_mean = max(short_mean, demand)

    # Bursts, judged on the short window: is one under way, and will units
    # asked for now be needed once ready? This pool's past bursts say; one
    # that has lasted a whole lead time is bought.
    short_need = units_for(short_mean, policy)
    burst = rules.burst_step(state.burst, short_need, current, stable_mean, now)
    watch = state.burst_watch
    if burst.since == now and state.burst.since is None:
        watch = (*watch, (now, current, False))
    watch, outcomes = rules.watch_step(
        watch, state.burst_outcomes, short_need, now, lead_s=lead, hold_s=hold_s, keep=BURSTS
    )
    buy = (
        burst.since is None
        or now - burst.since >= lead
        or rules.worth_buying(rules.needed_again(outcomes), q)
    )

    # Jumps in demand, and the calendar of those that lasted: did load jump at
    # this time of day (from two minutes ago to a lead time plus two minutes
    # ahead) on enough past days for buying ahead to pay? Then the units are
    # asked for now, ready before it. The level a jump is measured from: the
    # hold window before the stable one.
    older = _cut(samples, now - policy.stable_window_s)
    level = sum(map(_VALUE, samples[:older])) / older if older else stable_mean
    jump, jumps = rules.jump_step(
        state.jump,
        short_mean,
        level,
        state.jumps,
        now,
        threshold=policy.panic_threshold,
        lasting_s=lead / 2,
        relevant=short_need > units_for(level, policy),
        keep_s=CALENDAR_DAYS * forecast.DAY_S,
        keep=JUMPS,
    )
    calendar = state.calendar
    if now - calendar[0] >= CALENDAR_EVERY_S:
        first = fc.first_t if fc.first_t is not None else now
        share, ratio = rules.recurring_jump(
            jumps,
            now - CALENDAR_WINDOW_S,
            now + lead + CALENDAR_WINDOW_S,
            days_seen=min(CALENDAR_DAYS, int((now - first) // forecast.DAY_S)),
            min_days=CALENDAR_MIN_DAYS,
        )
        calendar = (now, share, ratio)
    ahead = 0.0
    if calendar[1] > 0 and rules.worth_prebuying(
        calendar[1], weight=policy.slo_weight, lead_s=lead, early_s=2 * CALENDAR_WINDOW_S
    ):
        ahead = (jump.base if jump.since is not None else level) * calendar[2]

    # Need: demand one lead time ahead at the cost quantile. A rise counts when
    # both windows show it (the stable one: not a blip; the short one: still
    # there); when requests queue now, the short window alone. A burst not
    # worth buying does not count: the pool stays sized for its level before.
    short_now = short_mean > current * policy.unit_capacity
    base = max(stable_mean, short_mean) if short_now else min(stable_mean, short_mean)
    if not buy:
        base = min(base, burst.level)
    reactive = units_for(base, policy)
    predicted: float | None = None
    need = reactive
    error_q, whole_q, error_shift = state.error_q, state.whole_q, state.error_shift
    shift = 0.0
    if forecast.ready(fc):
        rise = forecast.predict(fc, now + lead) - forecast.predict(fc, now)
        err_q = state.error_q[2] if state.error_q[:2] == (fc.last_residual_at, q) else None
        if err_q is None:
            err_q = forecast.error_quantile(fc, q)
            error_q = (fc.last_residual_at, q, err_q)
        # The hour's shape at the minute a lead time ahead (read at its middle),
        # read again when that minute changes.
        minute = (now + lead) // 60
        if err_q is not None and error_shift[0] != minute:
            if whole_q[1] != q or now - whole_q[0] >= forecast.WHOLE_EVERY_S:
                whole_q = (now, q, forecast.whole_quantile(fc, q))
            error_shift = (minute, forecast.hour_shift(fc, q, minute * 60 + 30, whole_q[2]))
        shift = error_shift[1] if err_q is not None and error_shift[0] == minute else 0.0
        err_q = None if err_q is None else err_q + shift
        predicted = rules.upper_demand(base, rise, err_q)
        need = max(reactive, units_for(predicted, policy))
    # A non-urgent rise must clear the count by `up_slack` of a unit's load:
    # a need that straddles a unit boundary does not buy and release in turn.
    slack = 0.0 if short_now else policy.up_slack * policy.unit_capacity * policy.target_utilization
    up_need = units_for(max(base, predicted or 0.0) - slack, policy)
    # A jump the calendar expects is bought ahead and kept until its time has
    # passed; it is not a need the hold keeps once it has not come.
    planned = need
    if ahead > 0 and units_for(ahead, policy) > need:
        planned = units_for(ahead, policy)
        up_need = max(up_need, planned)
        predicted = max(predicted or 0.0, ahead)

    # Panic: a burst worth buying that needs `panic_threshold` x the ready
    # units on the short window; once it is one, the latest tick sizes it (the
    # metrics are themselves a tick's mean, and a step shows in them at once).
    was = Panic(active=state.panic, since=state.panic_since, high=state.panic_high)
    burst_need = max(short_need, units_for(demand, policy)) if buy else 0
    if short_need < policy.panic_threshold * max(ready, 1):
        burst_need = min(burst_need, short_need)
    panic, over = rules.panic_step(
        was,
        burst_need,
        ready,
        current,
        now,
        threshold=policy.panic_threshold,
        exit_after_s=policy.stable_window_s,
    )

    # Hold: what demand within the last hold window needs, at the cost quantile.
    # `needs` only holds each need not exceeded by a later one, so its first
    # entry in the window is the window's highest need.
    # How long a unit once needed is kept idle is learned from this pool's idle
    # spells (`rules.best_hold`); the staircase of needs is remembered for the
    # longest hold, and a unit idle that long goes down as a spell never ended.
    rebuy_s = policy.slo_weight * lead * policy.rebuy_share
    choices = [c * lead for c in HOLD_CHOICES if c * lead <= rebuy_s] or [lead]
    needs, spells = rules.expire(state.needs, now - max(choices[-1], hold_s))
    keep_s = hold_s
    if state.hold_leads is not None:
        keep_s = rules.hold_window_s(lead, policy.billing_s, state.hold_leads)
    held = _since(needs, now - keep_s - 1e-6)  # a need exactly one window old counts
    keep = max(planned, held[0][1]) if held else planned
    if keep < current:  # only a possible scale-in needs the demand quantile
        window = _values(_since(samples, now - hold_s))
        keep = max(keep, units_for(rules.quantile(window, q), policy))

    if panic.active:
        panic = msgspec.structs.replace(panic, high=max(panic.high, need))
        desired = panic.high
    elif was.active:
        # Just left panic: ask again for the high-water mark; the hold lowers it.
        desired = max(current, was.high)
    else:
        desired = rules.settle(
            current,
            up_need,
            keep,
            short_now=short_now,
            since_change_s=now - max(state.last_up, state.last_down),
            since_down_s=now - state.last_down,
            cooldown_up_s=policy.cooldown_up_s,
            cooldown_down_s=policy.cooldown_down_s,
            min_change=policy.min_change_fraction,
            min_rise=rules.rise_fraction(
                policy.min_change_fraction, policy.target_utilization, RISE_HEADROOM_SHARE
            ),
        )
    if desired > current:
        desired = min(desired, current + policy.max_step_up)
    desired = _clamp(desired, policy)
    mode = rules.mode_of(desired, current, reactive, panic.active or was.active)
    # A burst's count is a need like any other: the hold keeps it a hold window.
    latest = max(need, desired) if panic.active or was.active else need
    spells += rules.reneeded(needs, latest, now, min_idle_s=lead)
    needs = (*(e for e in needs if e[1] > latest), (now, latest))
    idle, hold_leads = state.idle, state.hold_leads
    if spells:
        idle = (*idle, *spells)[-IDLE_SPELLS:]
        if len(idle) >= IDLE_MIN:
            hold_leads = rules.best_hold(idle, choices, rebuy_s) / lead
    return _finish(
        state,
        metrics,
        policy,
        now,
        current=current,
        desired=desired,
        mode=mode,
        demand=demand,
        predicted=predicted if mode == "predictive" else None,
        lead=lead,
        holding=(panic.active and not over) or (was.active and not panic.active),
        recurring=(calendar[1], calendar[2]) if planned > need else None,
        hour=(int((now + lead) % forecast.PHASE_S // 60), shift) if shift > 0 else None,
        hold=(keep_s, len(state.idle) if state.hold_leads is not None else 0),
        updates={
            "samples": samples,
            "needs": needs,
            "error_q": error_q,
            "whole_q": whole_q,
            "error_shift": error_shift,
            "forecast": fc,
            "panic": panic.active,
            "panic_since": panic.since,
            "panic_high": panic.high if panic.active else 0,
            "burst": burst,
            "burst_watch": watch,
            "burst_outcomes": outcomes,
            "step_watch": steps,
            "step_outcomes": step_outcomes,
            "jump": jump,
            "jumps": jumps,
            "calendar": calendar,
            "idle": idle,
            "hold_leads": hold_leads,
        },
    )


def _finish(
    state: PoolState,
    metrics: PoolMetrics,
    policy: Policy,
    now: float,
    *,
    current: int,
    desired: int,
    mode: ScaleMode,
    demand: float,
    predicted: float | None,
    lead: float,
    holding: bool,
    recurring: tuple[float, float] | None,
    hour: tuple[int, float] | None,
    hold: tuple[float, int],
    updates: dict[str, Any],
) -> tuple[PoolState, ScaleProposal | None]:
    """Record the decision in the state and build the proposal, if one is due:
    a changed count at once, an unchanged unfulfilled one every `repropose_s`."""
    last_up = now if desired > current else state.last_up
    last_down = now if desired < current else state.last_down
    proposal: ScaleProposal | None = None
    seq, last_at = state.seq, state.last_proposal_at
    changed = desired != state.last_desired
    if desired != current and (changed or now - last_at >= policy.repropose_s):
        seq += 1
        last_at = now
        proposal = ScaleProposal(
            id=f"scale:{metrics.pool}:{seq}",
            ts=now,
            pool=metrics.pool,
            current=current,
            desired=desired,
            mode=mode,
            forecast=round(predicted, 3) if predicted is not None else None,
            reason=reason(
                mode,
                current,
                desired,
                demand,
                predicted,
                lead,
                policy,
                holding=holding,
                recurring=recurring,
                hour=hour,
                hold=hold,
            ),
        )
    new_state = msgspec.structs.replace(
        state,
        pool=metrics.pool,
        seq=seq,
        last_up=last_up,
        last_down=last_down,
        last_proposal_at=last_at,
        last_desired=desired,
        **updates,
    )
    return new_state, proposal


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(PoolState)


def state_to_bytes(state: PoolState) -> bytes:
    """Serialise a PoolState (msgpack) for the service's store."""
    return _state_encoder.encode(state)


def state_from_bytes(data: bytes) -> PoolState:
    """Restore a PoolState written by `state_to_bytes`."""
    return _state_decoder.decode(data)


_history_decoder = msgspec.msgpack.Decoder(forecast.History)


def state_parts(state: PoolState, *, history: bool = True) -> tuple[bytes, bytes | None]:
    """The state as two records for the store: the part that changes every tick,
    and its forecaster's slow part (`forecast.History`), which changes at most once
    a minute and needs writing only then (`same_history`); None when not asked for,
    so a tick that writes none does not encode it."""
    light = msgspec.structs.replace(state, forecast=forecast.without_history(state.forecast))
    slow = _state_encoder.encode(forecast.history(state.forecast)) if history else None
    return _state_encoder.encode(light), slow


def state_from_parts(light: bytes, history: bytes | None) -> PoolState:
    """Restore a state written by `state_parts`. Without a history record (a state
    stored whole, by `state_to_bytes`), the state is taken as it is."""
    state = state_from_bytes(light)
    if history is None:
        return state
    h = _history_decoder.decode(history)
    return msgspec.structs.replace(state, forecast=forecast.with_history(state.forecast, h))


def same_history(a: PoolState, b: PoolState) -> bool:
    """True when `b`'s forecaster has the slow part `a`'s had (nothing to write again)."""
    return forecast.same_history(a.forecast, b.forecast)
