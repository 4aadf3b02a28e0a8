"""Demand forecaster: Holt's level and trend plus a learned daily profile.

Everything here is pure: `observe` and `predict` take a `ForecastState` and
return values, never read a clock and never mutate. The state is a msgspec
Struct, so the service stores it (`to_bytes`) and a restarted scaler resumes
with the forecast it had (`from_bytes`).

The model, learned online from one demand sample per scaler tick:

- samples are averaged into buckets of `BUCKET_S` seconds; the model only
  moves when a bucket closes, which keeps it cheap at a one-second tick and
  insensitive to per-second noise;
- a daily profile `P` holds the mean demand for each `SLOT_S` slot of the day
  (EWMA across days), read with linear interpolation between slot centres;
- Holt's linear method (level, damped trend) runs on the demand minus the
  profile once the profile covers a full day, and on the raw demand before;
- `error` is the EWMA of the absolute error the model made at the horizon
  the scaler asks for (`horizon_s`), scored when that time arrives;
- `residuals` is the forecaster's own error distribution: every
  `RESIDUAL_EVERY_S` one demand sample minus what the forecaster said, one
  horizon earlier, that demand would be (the anchored forecast: the bucket's
  mean plus the model's change over the horizon). Its quantiles
  (`error_quantile`) turn the point forecast into a probabilistic one, so the
  scaler can buy exactly the headroom its cost trade-off asks for;
- `phased` keeps the same errors for two days with their times, so the
  quantile can be read at the minute of the hour it is asked for
  (`hour_shift`): load that jumps at :00 or :30 (scheduled jobs,
  crawlers, batch pushes) makes the forecaster miss at those minutes and not
  between them, and headroom bought at every minute for a miss that only
  comes at some is paid for all hour.
"""

from __future__ import annotations

import bisect
import math

import msgspec

BUCKET_S = 60.0
"""Seconds averaged into one model update; a minute smooths per-second noise."""
SLOT_S = 300.0
"""Width of one slot of the daily profile, seconds (288 slots a day)."""
DAY_S = 86_400.0
SLOTS = int(DAY_S // SLOT_S)
ALPHA = 0.3
"""Level smoothing per bucket: follows a change within a few minutes."""
BETA = 0.1
"""Trend smoothing per bucket."""
PHI = 0.97
"""Trend damping per bucket, so a trend is not extrapolated for ever."""
GAMMA = 0.15
"""Profile smoothing per update; each slot gets ~5 updates a day, so ~1.5 days memory."""
ERROR_WEIGHT = 0.05
"""EWMA weight of one scored forecast error."""
MIN_BUCKETS = 5
"""Buckets of history before `ready()`; earlier forecasts are not trusted."""
RESIDUALS = 360
"""Residuals kept: at one per `RESIDUAL_EVERY_S`, six hours of the forecaster's
errors. A burst's first minutes are then a few of 360, below a 95 % tail; with
one hour kept, one burst lifted the quantile to burst size for the next hour
and the pool paid for headroom it did not use (ADR 0008)."""
RESIDUAL_EVERY_S = 60.0
"""Seconds between two residuals kept; consecutive ticks are too alike to add much."""
MIN_RESIDUALS = 60
"""Errors measured before `error_quantile` answers: an hour at one a minute, so a
95 % quantile rests on three errors beyond it, not on one surprise."""
PHASE_S = 3600.0
"""Period whose phase the errors are read at: the hour, the period of most
scheduled load (cron jobs at :00, :30, :15)."""
PHASE_WINDOW_S = 60.0
"""Errors within this many seconds of the asked-for time's minute of the hour
count for it (the scaler asks at the middle of a minute): a job on the minute
makes the forecaster miss within a minute or two of it."""
PHASE_KEEP_S = 2 * DAY_S
"""How long errors are kept with their times: two days, ~2,900 errors and ~96
near any minute of the hour, so a 95 % tail rests on ~5 of them."""
PHASE_MIN = 30
"""Errors near the asked-for minute before the hour's shape is used."""
WHOLE_EVERY_S = 3600.0
"""Seconds between two sorts of all the kept errors for `whole_quantile`: it
moves slowly (an hour of errors in 48), and sorting ~2,900 errors each minute
made a two-month replay minutes slower."""
PHASE_Z = 3.0
"""Standard deviations by which the errors near the minute must stray from the
whole hour's before the hour's shape is used: the count of them above the
hour's quantile against its binomial expectation. Most load has no hourly
habit, and a minute that differs only by chance would move the headroom by
noise: without this test, worldcup98 (per minute, no hourly habit) was short
15-20 % more at the same spend (ADR 0008, revision 8)."""


class ForecastState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the forecaster has learned; serialisable, immutable."""

    horizon_s: float = 120.0
    """How far ahead the owner predicts; errors are scored at this horizon, seconds."""
    first_t: float | None = None
    """Time of the first observation, unix seconds."""
    bucket_start: float | None = None
    bucket_sum: float = 0.0
    bucket_n: int = 0
    buckets: int = 0
    """Buckets closed so far."""
    level: float = 0.0
    trend: float = 0.0
    """Demand change per second."""
    seasonal: bool = False
    """True once the profile covers a whole day and the level is deseasonalised."""
    profile: tuple[float, ...] = ()
    """Mean demand per slot of the day (empty until the first bucket closes)."""
    seen: tuple[int, ...] = ()
    """Updates each profile slot has had."""
    scored: tuple[tuple[float, float], ...] = ()
    """(target time, predicted demand) awaiting their actual value."""
    error: float = 0.0
    """EWMA of the absolute forecast error at `horizon_s`, requests in flight."""
    errors_scored: int = 0
    ahead: tuple[tuple[float, float], ...] = ()
    """(target time, anchored forecast made one horizon earlier) not yet due."""
    residuals: tuple[float, ...] = ()
    """The last `RESIDUALS` errors (actual - anchored forecast), oldest first."""
    last_residual_at: float = -math.inf
    phased: tuple[tuple[float, float], ...] = ()
    """(time, residual) of the errors of the last `PHASE_KEEP_S`, oldest first."""


class History(msgspec.Struct, frozen=True, kw_only=True):
    """The slow part of a `ForecastState`: the daily profile and the kept errors,
    which change at most once a minute (a bucket closing, an error recorded) and
    are most of its size (~60 KB after two days). The scaler stores them apart from
    the rest, which changes every tick, and writes them only when they change."""

    profile: tuple[float, ...] = ()
    seen: tuple[int, ...] = ()
    residuals: tuple[float, ...] = ()
    phased: tuple[tuple[float, float], ...] = ()


def history(state: ForecastState) -> History:
    """The state's slow part (`History`)."""
    return History(
        profile=state.profile, seen=state.seen, residuals=state.residuals, phased=state.phased
    )


def without_history(state: ForecastState) -> ForecastState:
    """The state with its slow part left out, to be stored apart (`with_history`)."""
    return msgspec.structs.replace(state, profile=(), seen=(), residuals=(), phased=())


def with_history(state: ForecastState, h: History) -> ForecastState:
    """The state with the slow part `h` put back."""
    return msgspec.structs.replace(
        state, profile=h.profile, seen=h.seen, residuals=h.residuals, phased=h.phased
    )


def same_history(a: ForecastState, b: ForecastState) -> bool:
    """True when `b`'s slow part is `a`'s, unchanged: the same objects, as `observe`
    passes them on until a bucket closes or an error is recorded (a cheap test, no
    comparison of thousands of errors)."""
    return (
        a.profile is b.profile
        and a.seen is b.seen
        and a.residuals is b.residuals
        and a.phased is b.phased
    )


def _slot(t: float) -> int:
    return int((t % DAY_S) // SLOT_S)


def profile_at(state: ForecastState, t: float) -> float:
    """The daily profile at time `t`, interpolated between slot centres (0 before any)."""
    if not state.profile:
        return 0.0
    pos = (t % DAY_S) / SLOT_S - 0.5
    lo = math.floor(pos)
    frac = pos - lo
    a = state.profile[lo % SLOTS]
    b = state.profile[(lo + 1) % SLOTS]
    # A slot never seen yet borrows its neighbour rather than reading as zero.
    if not state.seen[lo % SLOTS]:
        a = b
    if not state.seen[(lo + 1) % SLOTS]:
        b = a
    return a + (b - a) * frac


def _damped(trend: float, horizon_s: float) -> float:
    """Trend contribution over `horizon_s`, damped per bucket."""
    steps = max(0.0, horizon_s / BUCKET_S)
    if steps == 0.0:
        return 0.0
    total: float = PHI * (1 - PHI**steps) / (1 - PHI)
    return trend * BUCKET_S * total


def predict(state: ForecastState, t_future: float) -> float:
    """Forecast demand (requests in flight) at `t_future`; never negative."""
    if state.buckets == 0:
        return state.bucket_sum / state.bucket_n if state.bucket_n else 0.0
    ref = (state.bucket_start or t_future) - BUCKET_S / 2
    value = state.level + _damped(state.trend, t_future - ref)
    if state.seasonal:
        value += profile_at(state, t_future)
    return max(0.0, value)


def ready(state: ForecastState) -> bool:
    """True when enough history has been seen for forecasts to be used."""
    return state.buckets >= MIN_BUCKETS


def covers_day(state: ForecastState) -> bool:
    """True when the daily profile is in use (the history spans a day)."""
    return state.seasonal


def _close_bucket(state: ForecastState) -> ForecastState:
    """Fold the finished bucket into profile, level, trend and error."""
    assert state.bucket_start is not None and state.bucket_n > 0
    y = state.bucket_sum / state.bucket_n
    mid = state.bucket_start + BUCKET_S / 2
    slot = _slot(mid)

    # Score forecasts whose target falls in this bucket.
    error, scored_n = state.error, state.errors_scored
    keep: list[tuple[float, float]] = []
    for target, predicted in state.scored:
        if target < state.bucket_start + BUCKET_S:
            miss = abs(y - predicted)
            error = miss if scored_n == 0 else error + ERROR_WEIGHT * (miss - error)
            scored_n += 1
        else:
            keep.append((target, predicted))

    profile = list(state.profile) if state.profile else [0.0] * SLOTS
    seen = list(state.seen) if state.seen else [0] * SLOTS
    profile[slot] = y if seen[slot] == 0 else profile[slot] + GAMMA * (y - profile[slot])
    seen[slot] += 1

    seasonal = state.seasonal
    level, trend = state.level, state.trend
    if state.buckets == 0:
        level, trend = y, 0.0
    else:
        switch = not seasonal and state.first_t is not None and mid - state.first_t >= DAY_S
        if switch:
            # From now on the level is demand minus the profile; restart Holt on it.
            seasonal = True
            level, trend = y - profile[slot], 0.0
        else:
            base = y - profile[slot] if seasonal else y
            prev = level
            level = ALPHA * base + (1 - ALPHA) * (prev + PHI * trend * BUCKET_S)
            trend = BETA * (level - prev) / BUCKET_S + (1 - BETA) * PHI * trend

    new = msgspec.structs.replace(
        state,
        bucket_sum=0.0,
        bucket_n=0,
        buckets=state.buckets + 1,
        level=level,
        trend=trend,
        seasonal=seasonal,
        profile=tuple(profile),
        seen=tuple(seen),
        error=error,
        errors_scored=scored_n,
    )
    target = state.bucket_start + BUCKET_S + state.horizon_s
    keep.append((target, predict(new, target)))
    # The anchored forecast for one horizon ahead: this bucket's mean plus the
    # model's change, the same shape the scaler reads (`rise`).
    anchored = max(0.0, y + predict(new, target) - predict(new, mid))
    ahead = (*tuple(a for a in state.ahead if a[0] >= mid), (target, anchored))
    return msgspec.structs.replace(new, scored=tuple(keep[-64:]), ahead=ahead[-64:])


def _record_residual(state: ForecastState, t: float, demand: float) -> ForecastState:
    """Keep `demand - anchored forecast` for `t` when one is due and the stride allows."""
    if t - state.last_residual_at < RESIDUAL_EVERY_S or not state.ahead:
        return state
    due = [a for a in state.ahead if abs(a[0] - t) <= BUCKET_S / 2]
    if not due:
        return state
    residual = demand - due[0][1]
    residuals = (*state.residuals[-(RESIDUALS - 1) :], residual)
    kept = state.phased[bisect.bisect_left(state.phased, t - PHASE_KEEP_S, key=_time) :]
    return msgspec.structs.replace(
        state, residuals=residuals, last_residual_at=t, phased=(*kept, (t, residual))
    )


def _quantile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of a non-empty list, interpolated between ranks."""
    ordered = sorted(values)
    n = len(ordered)
    pos = min(max(q, 0.0), 1.0) * (n - 1)
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def error_quantile(state: ForecastState, q: float) -> float | None:
    """The q-quantile (0..1) of the forecaster's measured errors one horizon ahead,
    requests in flight (positive: demand above the forecast); None before
    `MIN_RESIDUALS` errors have been measured."""
    if len(state.residuals) < MIN_RESIDUALS:
        return None
    return _quantile(list(state.residuals), q)


def phase_gap(a: float, b: float) -> float:
    """Seconds between the minutes of the hour of times `a` and `b` (0..1800)."""
    d = (a - b) % PHASE_S
    return min(d, PHASE_S - d)


def near_errors(state: ForecastState, t: float) -> list[float]:
    """The kept errors measured within `PHASE_WINDOW_S` of t's minute of the hour
    (`phase_gap`), found by a binary search per past hour, not a scan of all."""
    ph = state.phased
    out: list[float] = []
    if not ph:
        return out
    first = ph[0][0]
    hi = t + PHASE_WINDOW_S - PHASE_S * math.floor((t - ph[-1][0]) / PHASE_S)
    while hi >= first:
        i = bisect.bisect_left(ph, hi - 2 * PHASE_WINDOW_S, key=_time)
        j = bisect.bisect_right(ph, hi, key=_time)
        out.extend(r for _, r in ph[i:j])
        hi -= PHASE_S
    return out


def _time(e: tuple[float, float]) -> float:
    return e[0]


def whole_quantile(state: ForecastState, q: float) -> float | None:
    """The q-quantile of all the kept errors (`phased`); None before any."""
    return _quantile([r for _, r in state.phased], q) if state.phased else None


def hour_shift(state: ForecastState, q: float, t: float, whole: float | None = None) -> float:
    """The hour's shape of the errors at t's minute of the hour, requests in flight:
    how far the q-quantile of the errors made within `PHASE_WINDOW_S` of that
    minute over the last `PHASE_KEEP_S` lies above (or below) `whole`, the
    q-quantile of all of those errors (`whole_quantile`, computed here when not
    given); 0 with fewer than `PHASE_MIN` errors near it, or when they differ
    from the whole hour's by no more than chance (`PHASE_Z`)."""
    near = near_errors(state, t)
    n = len(near)
    if n < PHASE_MIN:
        return 0.0
    if whole is None:
        whole = whole_quantile(state, q)
        assert whole is not None  # near errors are kept errors
    above = sum(1 for r in near if r > whole)
    if abs(above - (1 - q) * n) < PHASE_Z * math.sqrt(n * q * (1 - q)):
        return 0.0  # no different from the whole hour but by chance
    return _quantile(near, q) - whole


def observe(state: ForecastState, t: float, demand: float) -> ForecastState:
    """Learn from one demand sample (requests in flight) taken at time `t`.

    Samples must come in time order; one older than the open bucket is ignored.
    A gap of several buckets (no telemetry) simply closes the open bucket.
    """
    if demand < 0 or math.isnan(demand) or math.isinf(demand):
        return state
    state = _record_residual(state, t, demand)
    if state.bucket_start is None:
        start = t - (t % BUCKET_S)
        return msgspec.structs.replace(
            state, first_t=t, bucket_start=start, bucket_sum=demand, bucket_n=1
        )
    if t < state.bucket_start:
        return state
    if t >= state.bucket_start + BUCKET_S:
        if state.bucket_n:
            state = _close_bucket(state)
        start = t - (t % BUCKET_S)
        return msgspec.structs.replace(state, bucket_start=start, bucket_sum=demand, bucket_n=1)
    return msgspec.structs.replace(
        state, bucket_sum=state.bucket_sum + demand, bucket_n=state.bucket_n + 1
    )


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ForecastState)


def to_bytes(state: ForecastState) -> bytes:
    """Serialise the state (msgpack) for the service's store."""
    return _encoder.encode(state)


def from_bytes(data: bytes) -> ForecastState:
    """Restore a state written by `to_bytes`; raises msgspec.DecodeError on bad data."""
    return _decoder.decode(data)
