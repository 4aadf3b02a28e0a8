"""The scaler's named rules at their exact boundaries, with plain values."""

from __future__ import annotations

import pytest

from services.scaler import rules
from services.scaler.rules import Panic

CALM = {"since_change_s": 1000.0, "since_down_s": 1000.0}


def test_the_quantile_never_exceeds_one_even_for_a_negative_price() -> None:
    assert rules.newsvendor_quantile(2.0, -1.0) == 1.0


def test_half_a_request_in_flight_needs_a_unit() -> None:
    assert rules.units_for(0.5, 10.0, 0.7) == 1
    assert rules.units_for(1.0, 10.0, 0.7) == 1


def test_quantile_interpolates_between_neighbouring_order_statistics() -> None:
    assert rules.quantile([3.0, 1.0, 2.0], 0.25) == pytest.approx(1.5)
    assert rules.quantile([4.0, 1.0, 3.0, 2.0], 0.5) == pytest.approx(2.5)


def test_a_burst_of_exactly_the_threshold_panics() -> None:
    # 4 units needed on 2 ready at threshold 2: exactly 2x is a burst.
    p, over = rules.panic_step(Panic(), 4, 2, 2, 10.0, threshold=2.0, exit_after_s=60.0)
    assert over and p.active and p.high == 4


def test_a_pool_of_one_ready_unit_panics_at_twice_that_unit() -> None:
    p, over = rules.panic_step(Panic(), 2, 1, 1, 10.0, threshold=2.0, exit_after_s=60.0)
    assert over and p == Panic(active=True, since=10.0, high=2)


def test_a_growing_burst_raises_the_high_water_mark_to_its_need() -> None:
    was = Panic(active=True, since=0.0, high=3)
    p, over = rules.panic_step(was, 6, 1, 2, 5.0, threshold=2.0, exit_after_s=60.0)
    assert over and p.high == 6


def test_a_new_burst_does_not_inherit_an_old_high_water_mark() -> None:
    old = Panic(active=False, since=0.0, high=10)
    p, over = rules.panic_step(old, 4, 1, 1, 500.0, threshold=2.0, exit_after_s=60.0)
    assert over and p == Panic(active=True, since=500.0, high=4)


def test_leaving_panic_keeps_when_the_burst_was_last_seen() -> None:
    was = Panic(active=True, since=100.0, high=8)
    p, over = rules.panic_step(was, 1, 4, 8, 160.0, threshold=2.0, exit_after_s=60.0)
    assert not over and p == Panic(active=False, since=100.0, high=8)


def test_while_panic_lasts_the_high_water_mark_follows_the_pool() -> None:
    was = Panic(active=True, since=100.0, high=5)
    p, over = rules.panic_step(was, 1, 4, 9, 130.0, threshold=2.0, exit_after_s=60.0)
    assert not over and p == Panic(active=True, since=100.0, high=9)


def test_settle_scales_in_when_the_need_equals_the_pool_but_the_hold_is_lower() -> None:
    got = rules.settle(
        5, 5, 3, short_now=False, cooldown_up_s=0.0, cooldown_down_s=30.0, min_change=0.1, **CALM
    )
    assert got == 3


def test_settle_cooldowns_end_exactly_at_their_length() -> None:
    up = rules.settle(
        4,
        6,
        6,
        short_now=False,
        since_change_s=10.0,
        since_down_s=10.0,
        cooldown_up_s=10.0,
        cooldown_down_s=30.0,
        min_change=0.1,
    )
    assert up == 6
    down = rules.settle(
        6,
        3,
        3,
        short_now=False,
        since_change_s=30.0,
        since_down_s=30.0,
        cooldown_up_s=0.0,
        cooldown_down_s=30.0,
        min_change=0.1,
    )
    assert down == 3


def test_an_unchanged_count_is_never_called_predictive() -> None:
    assert rules.mode_of(5, 5, 3, False) == "steady"
    assert rules.mode_of(6, 5, 3, False) == "predictive"
