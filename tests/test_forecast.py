"""The demand forecaster: trend, daily seasonality, and surviving a restart."""

from __future__ import annotations

import math

from services.scaler.forecast import (
    DAY_S,
    MIN_RESIDUALS,
    RESIDUAL_EVERY_S,
    ForecastState,
    covers_day,
    error_quantile,
    from_bytes,
    observe,
    predict,
    ready,
    to_bytes,
)


def feed(state: ForecastState, f, start: float, end: float, step: float = 10.0) -> ForecastState:
    t = start
    while t < end:
        state = observe(state, t, f(t))
        t += step
    return state


def test_follows_a_linear_trend() -> None:
    def f(t: float) -> float:
        return 10.0 + 0.01 * t

    state = feed(ForecastState(), f, 0.0, 7200.0, 1.0)
    assert ready(state)
    now = 7200.0
    assert math.isclose(predict(state, now + 300), f(now + 300), rel_tol=0.05)
    assert predict(state, now + 300) > predict(state, now)


def test_learns_the_daily_profile() -> None:
    def f(t: float) -> float:
        return 100.0 + 60.0 * math.sin(2 * math.pi * t / DAY_S)

    state = feed(ForecastState(horizon_s=1800.0), f, 0.0, 3 * DAY_S, 30.0)
    assert covers_day(state)
    now = 3 * DAY_S
    for ahead in (1800.0, 3 * 3600.0):
        assert abs(predict(state, now + ahead) - f(now + ahead)) < 6.0
    # The scored error at the horizon is small against the 60 swing.
    assert state.errors_scored > 0 and state.error < 6.0


def test_without_a_day_of_history_no_profile_is_used() -> None:
    state = feed(ForecastState(), lambda t: 50.0, 0.0, 3600.0)
    assert not covers_day(state)
    assert math.isclose(predict(state, 4000.0), 50.0, rel_tol=0.01)


def test_state_survives_serialisation() -> None:
    def f(t: float) -> float:
        return 30.0 + 20.0 * math.sin(2 * math.pi * t / DAY_S)

    state = feed(ForecastState(), f, 0.0, 1.2 * DAY_S, 60.0)
    restored = from_bytes(to_bytes(state))
    assert restored == state
    assert predict(restored, 1.2 * DAY_S + 600) == predict(state, 1.2 * DAY_S + 600)
    # A restarted owner continues exactly where the old one stopped.
    a = feed(state, f, 1.2 * DAY_S, 1.3 * DAY_S, 60.0)
    b = feed(restored, f, 1.2 * DAY_S, 1.3 * DAY_S, 60.0)
    assert a == b


def test_bad_samples_change_nothing() -> None:
    state = feed(ForecastState(), lambda t: 5.0, 0.0, 600.0)
    for bad in (math.nan, math.inf, -1.0):
        assert observe(state, 700.0, bad) == state
    assert observe(state, 10.0, 5.0) == state  # older than the open bucket


def test_error_quantile_is_the_forecasters_own_measured_error() -> None:
    # Flat demand of 50 with a +-10 swing: the forecast one horizon ahead is ~50,
    # so its errors spread from -10 to +10.
    def f(t: float) -> float:
        return 60.0 if int(t // 20) % 2 else 40.0

    early = feed(ForecastState(horizon_s=120.0), f, 0.0, 600.0)
    assert error_quantile(early, 0.95) is None  # too few errors to say
    state = feed(ForecastState(horizon_s=120.0), f, 0.0, 4 * 3600.0)
    assert len(state.residuals) >= MIN_RESIDUALS
    hi = error_quantile(state, 0.95)
    lo = error_quantile(state, 0.05)
    assert hi is not None and lo is not None
    assert 5.0 < hi <= 12.0
    assert -12.0 <= lo < -5.0
    # One residual per RESIDUAL_EVERY_S at most, whatever the sample rate.
    assert len(state.residuals) <= 4 * 3600.0 / RESIDUAL_EVERY_S
    assert from_bytes(to_bytes(state)) == state
