"""The scaler's policy settings and its pure decision, `decide()`.

`decide(state, metrics, policy, now) -> (state, proposal | None)` reads no
clock, draws no random number and does no I/O: the service feeds it every
PoolMetrics and stores the returned PoolState; `fleet replay` runs the very
same function in virtual time.

Three modes (see docs/adr/0002-scaler-modes.md):

- steady: scale up when utilization passes `scale_up_at`; scale in only to
  the highest recommendation of the last `stable_window_s` (as Kubernetes'
  HPA scale-down stabilization), and only `cooldown_down_s` after the last
  change, so oscillating load never yields alternating up/down;
- panic: when demand over `panic_window_s` needs `panic_threshold` times the
  ready units, jump at once; never scale in while panicking; on leaving
  panic keep the high-water mark and let the stabilized path lower it;
- predictive: forecast demand `lead_time_s` ahead (trend, plus the daily
  profile once a day of history exists) with headroom proportional to the
  forecast's own measured error; a forecast only ever raises the count.
"""

from __future__ import annotations

import math

import msgspec

from contracts.commands import ScaleMode, ScaleProposal
from contracts.telemetry import PoolMetrics
from services.scaler import forecast
from services.scaler.forecast import ForecastState


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    """One pool's scaling settings."""

    min: int = 1
    """Fewest units, also what silence scales to."""
    max: int = 100
    """Most units the scaler will ever propose."""
    unit_capacity: float = 8.0
    """Requests (or sessions) in flight one unit serves at full load."""
    target_utilization: float = 0.7
    """Utilization a scaling action aims for; 0.7 leaves room for per-second noise."""
    scale_up_at: float = 0.8
    """Utilization of the requested units above which the steady mode scales up."""
    scale_down_at: float = 0.3
    """Utilization of the stable window's peak below which a scale-in ignores
    `max_step_down` (the pool is plainly oversized). Between this and the target
    the pool shrinks at most `max_step_down` units per step."""
    cooldown_up_s: float = 0.0
    """Seconds after a scale-in before a steady scale-up; 0 because a late
    scale-up costs requests. Panic and forecasts are never delayed by it."""
    cooldown_down_s: float = 30.0
    """Seconds after any change before a scale-in."""
    stable_window_s: float = 60.0
    """Window whose highest recommendation bounds a scale-in, seconds (KPA's 60 s)."""
    panic_window_s: float = 6.0
    """Short window watched for bursts, seconds (KPA's 10 % of the stable window)."""
    panic_threshold: float = 2.0
    """Panic when the panic window's demand needs this many times the ready units."""
    max_step_up: int = 1000
    """Most units one scale-up adds."""
    max_step_down: int = 10
    """Most units one scale-in removes (unless below `scale_down_at`)."""
    lead_time_s: float = 120.0
    """Seconds from requesting a unit to it serving; replaced by the learned value
    once requested->ready times have been observed (`learn_lead_time`)."""
    forecast_margin: float = 0.0
    """Extra headroom on a forecast rise, in multiples of the forecast's measured
    absolute error. 0 by default: the target utilization already leaves 30 %
    room, and on the reference traces a margin bought little at a real cost;
    raise it for pools where a missed request costs far more than a unit."""
    tick_s: float = 2.0
    """Seconds between metrics the policy is tuned for (the watcher's tick)."""
    repropose_s: float = 30.0
    """Seconds after which an unfulfilled proposal is sent again."""


class PoolState(msgspec.Struct, frozen=True, kw_only=True):
    """What the scaler remembers about one pool; store it as msgspec (msgpack)."""

    pool: str = ""
    seq: int = 0
    """Proposals emitted; the next id is `scale:<pool>:<seq>`."""
    samples: tuple[tuple[float, float], ...] = ()
    """(time, demand) inside the stable window."""
    recs: tuple[tuple[float, int], ...] = ()
    """(time, recommended units) inside the stable window."""
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


LEAD_WEIGHT = 0.3
"""EWMA weight of one observed requested->ready time."""


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
    """Units that serve `demand` requests in flight at the target utilization."""
    if demand <= 0:
        return 0
    per_unit = policy.unit_capacity * policy.target_utilization
    # Tolerate float dust: 14.000000001 / 7 must not become 3 units.
    return math.ceil(demand / per_unit - 1e-9)


def _clamp(n: int, policy: Policy) -> int:
    return max(policy.min, min(policy.max, n))


def decide(
    state: PoolState, metrics: PoolMetrics, policy: Policy, now: float
) -> tuple[PoolState, ScaleProposal | None]:
    """One scaling decision for one pool from its latest metrics; pure."""
    demand = max(0.0, metrics.inflight + metrics.queue_depth)
    current = metrics.units_ready + metrics.units_pending
    ready = metrics.units_ready
    lead = lead_time(state, policy)
    horizon = max(policy.stable_window_s, policy.panic_window_s)

    samples = (*tuple(s for s in state.samples if s[0] > now - horizon), (now, demand))
    fc = state.forecast
    if fc.horizon_s != lead:
        fc = msgspec.structs.replace(fc, horizon_s=lead)
    fc = forecast.observe(fc, now, demand)

    # Panic: the short window's demand needs panic_threshold x the ready units.
    panic_vals = [d for t, d in samples if t > now - policy.panic_window_s]
    # The latest metrics are themselves a window_s average, so a step shows in
    # them at once; the window mean alone would take the whole window to show it.
    panic_need = units_for(max(sum(panic_vals) / len(panic_vals), demand), policy)
    over = panic_need >= policy.panic_threshold * max(ready, 1) and panic_need > current
    panic, panic_since, panic_high = state.panic, state.panic_since, state.panic_high
    if over:
        if not panic:
            panic_high = current
        panic, panic_since = True, now
    elif panic and now - panic_since >= policy.stable_window_s:
        panic = False

    # Reactive: the stable window's mean demand, or the short window's when it
    # runs hot; means, not single ticks, so per-second noise does not buy units.
    stable_mean = sum(d for _, d in samples) / len(samples)
    short_mean = sum(panic_vals) / len(panic_vals)
    reactive = units_for(stable_mean, policy)
    if short_mean > current * policy.unit_capacity:
        # Requests are queueing now: do not wait for the stable window.
        reactive = max(reactive, units_for(short_mean, policy))
    elif stable_mean <= policy.scale_up_at * current * policy.unit_capacity:
        # Inside the hysteresis band: no steady scale-up yet.
        reactive = min(reactive, current)
    mode: ScaleMode = "steady"
    want = reactive

    # Predictive: demand lead_time ahead plus headroom for the forecast's error.
    predicted: float | None = None
    if forecast.ready(fc):
        # The model's expected change over the lead time, added to what is
        # measured now: robust to the model's bias, and zero when flat.
        rise = forecast.predict(fc, now + lead) - forecast.predict(fc, now)
        margin = policy.forecast_margin * fc.error if fc.errors_scored else 0.0
        predicted = max(0.0, stable_mean + rise)
        pred_need = units_for(predicted + margin, policy) if rise > 0 else 0
        if pred_need > want:
            want, mode = pred_need, "predictive"

    recs = tuple(r for r in state.recs if r[0] > now - policy.stable_window_s)
    recs += ((now, want),)
    stable_max = max(r for _, r in recs)

    desired = current
    if panic:
        mode = "panic"
        panic_high = max(panic_high, current, panic_need, want)
        desired = panic_high
    elif state.panic:
        # Just left panic: hold the high-water mark; the stabilized path lowers it.
        recs = (*recs[:-1], (now, max(want, state.panic_high)))
        desired = max(current, state.panic_high)
        panic_high = 0
    else:
        up_ok = now - state.last_down >= policy.cooldown_up_s or mode == "predictive"
        if want > current and up_ok:
            desired = min(want, current + policy.max_step_up)
        elif stable_max < current and now - max(state.last_up, state.last_down) >= (
            policy.cooldown_down_s
        ):
            peak = max(d for _, d in samples)
            deep = peak < policy.scale_down_at * current * policy.unit_capacity
            floor_ = stable_max if deep else max(stable_max, current - policy.max_step_down)
            desired, mode = floor_, "steady"
    desired = _clamp(desired, policy)

    last_up, last_down = state.last_up, state.last_down
    if desired > current:
        last_up = now
    elif desired < current:
        last_down = now

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
            reason=_reason(
                mode,
                current,
                desired,
                demand,
                predicted,
                lead,
                policy,
                holding=(panic and not over) or (state.panic and not panic),
            ),
        )

    new_state = msgspec.structs.replace(
        state,
        pool=metrics.pool,
        seq=seq,
        samples=samples,
        recs=recs,
        last_up=last_up,
        last_down=last_down,
        last_proposal_at=last_at,
        last_desired=desired,
        panic=panic,
        panic_since=panic_since,
        panic_high=panic_high,
        forecast=fc,
    )
    return new_state, proposal


def _reason(
    mode: str,
    current: int,
    desired: int,
    demand: float,
    predicted: float | None,
    lead: float,
    policy: Policy,
    *,
    holding: bool = False,
) -> str:
    """One sentence naming the numbers behind a proposal."""
    cap = current * policy.unit_capacity
    util = f"{demand / cap:.0%}" if cap else "no capacity"
    verb = "up" if desired > current else "in"
    head = f"Scale {verb} {current} -> {desired} units ({mode}): {demand:.1f} in flight, {util}"
    if mode == "predictive" and predicted is not None:
        return f"{head}; forecast {predicted:.1f} in flight in {lead:.0f} s."
    if holding:
        return (
            f"{head}; holding the burst's high-water mark of {desired} units until "
            f"{policy.stable_window_s:.0f} s without a burst."
        )
    if mode == "panic":
        return f"{head}, over {policy.panic_threshold:g}x the ready capacity."
    return f"{head} of {cap:.0f} at target {policy.target_utilization:.0%}."


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(PoolState)


def state_to_bytes(state: PoolState) -> bytes:
    """Serialise a PoolState (msgpack) for the service's store."""
    return _state_encoder.encode(state)


def state_from_bytes(data: bytes) -> PoolState:
    """Restore a PoolState written by `state_to_bytes`."""
    return _state_decoder.decode(data)
