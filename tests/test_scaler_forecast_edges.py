"""The forecaster's edges with plain values: bucket boundaries, the daily profile's
interpolation, the day switch, error scoring, the residual window and its quantiles."""

from __future__ import annotations

import pytest

from services.scaler import forecast as f

T = 1_800_000_000.0 - 1_800_000_000.0 % 86_400.0
"""Midnight UTC: bucket 0 and profile slot 0 start here."""


def feed(
    demands: list[float], state: f.ForecastState | None = None, t0: float = T
) -> f.ForecastState:
    """One sample a minute, at the start of each bucket."""
    s = state or f.ForecastState()
    for k, d in enumerate(demands):
        s = f.observe(s, t0 + 60.0 * k, d)
    return s


def ramp_profile(seen: list[int] | None = None) -> f.ForecastState:
    """A profile whose slot i reads i, every slot seen unless told."""
    return f.ForecastState(
        profile=tuple(float(i) for i in range(f.SLOTS)),
        seen=tuple(seen if seen is not None else [1] * f.SLOTS),
    )


# -- observe: what is taken, and into which bucket ---------------------------


def test_the_first_sample_opens_the_minute_it_falls_in() -> None:
    s = f.observe(f.ForecastState(), T + 30.0, 7.0)
    assert (s.first_t, s.bucket_start, s.bucket_sum, s.bucket_n) == (T + 30.0, T, 7.0, 1)


def test_zero_and_small_demands_are_samples_not_noise() -> None:
    s = f.observe(f.ForecastState(), T, 0.0)
    assert s.bucket_n == 1
    s = f.observe(s, T + 1.0, 0.5)
    assert (s.bucket_sum, s.bucket_n) == (0.5, 2)


def test_negative_nan_and_infinite_demands_are_ignored() -> None:
    s = f.observe(f.ForecastState(), T, 4.0)
    for bad in (-1.0, float("nan"), float("inf")):
        assert f.observe(s, T + 1.0, bad) == s


def test_a_sample_at_the_bucket_start_counts_and_one_before_it_does_not() -> None:
    s = f.observe(f.ForecastState(), T, 4.0)
    s = f.observe(s, T, 6.0)
    assert (s.bucket_sum, s.bucket_n) == (10.0, 2)
    assert f.observe(s, T - 1.0, 100.0) == s


def test_a_sample_exactly_one_bucket_later_closes_the_bucket() -> None:
    s = feed([4.0, 6.0])
    assert s.buckets == 1
    assert (s.bucket_start, s.bucket_sum, s.bucket_n) == (T + 60.0, 6.0, 1)
    assert s.level == 4.0


def test_a_later_sample_opens_the_minute_it_falls_in() -> None:
    s = f.observe(f.observe(f.ForecastState(), T, 4.0), T + 90.0, 6.0)
    assert s.bucket_start == T + 60.0


# -- predict -----------------------------------------------------------------


def test_before_any_bucket_closes_the_forecast_is_the_open_bucket_mean() -> None:
    assert f.predict(f.ForecastState(), T) == 0.0
    s = f.observe(f.observe(f.observe(f.ForecastState(), T, 6.0), T + 1, 9.0), T + 2, 15.0)
    assert f.predict(s, T + 600.0) == 10.0


def test_the_trend_is_damped_per_bucket_from_the_middle_of_the_open_bucket() -> None:
    s = f.ForecastState(buckets=1, level=10.0, trend=0.1, bucket_start=T)
    assert f.predict(s, T - 30.0) == pytest.approx(10.0)  # no horizon: the level
    assert f.predict(s, T + 30.0) == pytest.approx(10.0 + 0.1 * 60 * 0.97)  # one bucket
    half = 0.97 * (1 - 0.97**0.5) / 0.03
    assert f.predict(s, T) == pytest.approx(10.0 + 0.1 * 60 * half)  # half a bucket


def test_a_forecast_is_never_negative_and_small_ones_are_kept() -> None:
    assert f.predict(f.ForecastState(buckets=1, level=0.5, bucket_start=T), T - 30.0) == 0.5
    assert f.predict(f.ForecastState(buckets=1, level=-3.0, bucket_start=T), T - 30.0) == 0.0


def test_a_seasonal_forecast_is_the_level_plus_the_profile() -> None:
    s = f.ForecastState(
        buckets=3,
        level=5.0,
        bucket_start=T,
        seasonal=True,
        profile=(3.0,) * f.SLOTS,
        seen=(1,) * f.SLOTS,
    )
    assert f.predict(s, T - 30.0) == pytest.approx(8.0)


def test_ready_after_exactly_five_buckets() -> None:
    assert not f.ready(f.ForecastState(buckets=4))
    assert f.ready(f.ForecastState(buckets=5))


# -- the daily profile -------------------------------------------------------


def test_no_profile_reads_zero() -> None:
    assert f.profile_at(f.ForecastState(), T + 1234.0) == 0.0


def test_the_profile_interpolates_between_slot_centres() -> None:
    s = ramp_profile()
    assert f.profile_at(s, T + 1.5 * f.SLOT_S) == pytest.approx(1.0)  # centre of slot 1
    assert f.profile_at(s, T + 1.75 * f.SLOT_S) == pytest.approx(1.25)
    assert f.profile_at(s, T + 3.5 * f.SLOT_S + f.DAY_S) == pytest.approx(3.0)  # next day


def test_an_unseen_slot_borrows_its_neighbour() -> None:
    seen = [1] * f.SLOTS
    seen[2] = 0
    s = ramp_profile(seen)
    # Between slot 1 (1.0) and unseen slot 2: flat at slot 1's value.
    assert f.profile_at(s, T + 1.75 * f.SLOT_S) == pytest.approx(1.0)
    # Between unseen slot 2 and slot 3 (3.0): flat at slot 3's value.
    assert f.profile_at(s, T + 2.75 * f.SLOT_S) == pytest.approx(3.0)


def test_a_first_bucket_at_midnight_sets_slot_zero_only() -> None:
    s = feed([10.0, 10.0])
    assert s.profile[0] == 10.0 and s.seen[0] == 1
    assert s.profile[1] == 0.0 and s.profile[f.SLOTS - 1] == 0.0
    assert s.seen[f.SLOTS - 1] == 0


def test_a_slot_seen_again_moves_by_gamma() -> None:
    s = feed([10.0, 20.0, 0.0])
    assert s.seen[0] == 2
    assert s.profile[0] == pytest.approx(11.5)
    s = feed([0.0, 0.0, 0.0], s, T + 180.0)
    assert s.seen[0] == 5


# -- Holt --------------------------------------------------------------------


def test_level_and_trend_follow_a_ramp() -> None:
    s = feed([10.0, 20.0, 30.0, 30.0])
    # b1: level 10; b2: level 0.3*20 + 0.7*10 = 13, trend 0.1*3/60 = 0.005;
    # b3: level 0.3*30 + 0.7*(13 + 0.97*0.005*60) = 18.3037
    assert s.level == pytest.approx(18.3037)
    assert s.trend == pytest.approx(0.0132045)


def test_the_first_bucket_sets_the_level_to_its_mean() -> None:
    s = feed([12.0, 12.0])
    assert (s.level, s.trend) == (12.0, 0.0)


def test_the_profile_takes_over_exactly_one_day_after_the_first_sample() -> None:
    s = f.observe(f.ForecastState(), T + 30.0, 10.0)
    for k in range(1, 1441):
        s = f.observe(s, T + 60.0 * k, 10.0)
        if k == 3:
            assert not f.covers_day(s)
    assert not f.covers_day(s)
    # The bucket whose middle is exactly one day after the first sample closes.
    s = f.observe(s, T + 60.0 * 1441, 10.0)
    assert f.covers_day(s)
    # Flat demand: the profile explains all of it; Holt restarts at zero.
    assert s.level == pytest.approx(0.0, abs=1e-9)
    assert s.trend == 0.0
    assert f.predict(s, T + 60.0 * 1441 + 120.0) == pytest.approx(10.0, abs=1e-6)


# -- error scoring -----------------------------------------------------------


def test_the_first_scored_error_is_the_miss_and_later_ones_are_averaged() -> None:
    # The forecast made when bucket 0 closed targets T+180, scored in bucket 3.
    s = feed([10.0, 10.0, 10.0, 40.0])
    assert (s.errors_scored, s.error) == (0, 0.0)
    s = f.observe(s, T + 240.0, 10.0)
    assert (s.errors_scored, s.error) == (1, 30.0)
    s = f.observe(s, T + 300.0, 10.0)
    assert s.errors_scored == 2
    assert s.error == pytest.approx(28.5)


def test_pending_forecasts_and_anchors_are_capped_at_64() -> None:
    s = feed([5.0] * 70, f.ForecastState(horizon_s=6000.0))
    assert len(s.scored) == 64
    assert len(s.ahead) == 64


def test_an_anchor_due_at_a_bucket_middle_is_kept_for_it() -> None:
    s = feed([10.0] * 6, f.ForecastState(horizon_s=150.0))
    assert [a[0] - T for a in s.ahead] == [270.0, 330.0, 390.0, 450.0]


def test_the_anchor_for_zero_demand_is_zero() -> None:
    s = feed([0.0, 0.0])
    assert s.ahead == ((T + 180.0, 0.0),)


def test_the_anchor_on_a_ramp_adds_the_model_change_from_the_bucket_middle() -> None:
    s = feed([10.0, 20.0, 30.0, 30.0])
    assert [round(a[1], 6) for a in s.ahead] == [10.0, 20.689877, 31.821896]


# -- residuals and quantiles -------------------------------------------------


def test_a_residual_is_taken_half_a_bucket_from_the_anchor() -> None:
    s = feed([10.0, 10.0])  # anchor (T+180, 10)
    assert f.observe(s, T + 150.0, 25.0).residuals == (15.0,)
    assert f.observe(s, T + 149.0, 25.0).residuals == ()


def test_at_most_360_residuals_are_kept_oldest_dropped() -> None:
    s = feed([10.0] * 400)
    assert len(s.residuals) == f.RESIDUALS
    s = f.ForecastState(
        residuals=tuple(float(i) for i in range(360)),
        ahead=((T + 1000.0, 0.0),),
    )
    s = f.observe(s, T + 1000.0, 7.0)
    assert len(s.residuals) == 360
    assert s.residuals[0] == 1.0 and s.residuals[-1] == 7.0


def shuffled_residuals(n: int) -> f.ForecastState:
    values = [float((i * 37) % n) for i in range(n)]  # 0..n-1, out of order
    return f.ForecastState(residuals=tuple(values))


def test_quantiles_need_sixty_residuals() -> None:
    assert f.error_quantile(shuffled_residuals(59), 0.5) is None
    assert f.error_quantile(shuffled_residuals(60), 0.5) == pytest.approx(29.5)


def test_quantiles_interpolate_between_sorted_residuals() -> None:
    s = shuffled_residuals(60)  # 0..59
    assert f.error_quantile(s, 0.0) == 0.0
    assert f.error_quantile(s, 0.5) == pytest.approx(29.5)
    assert f.error_quantile(s, 0.99) == pytest.approx(58.41)
    assert f.error_quantile(s, 1.0) == 59.0
    assert f.error_quantile(s, 1.5) == 59.0
    assert f.error_quantile(s, -1.0) == 0.0
