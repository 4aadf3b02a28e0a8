"""The ledger's arithmetic at its edges, with plain values and chosen hours: the day's
end, price changes, reservations that run out, rate-limit buckets, the figures shown."""

from __future__ import annotations

import msgspec
import pytest

from contracts.base import MAX_CLOCK_SKEW_S
from contracts.events import UnitEvent
from services.costguard.ledger import (
    DAY_S,
    HOUR_S,
    Ledger,
    Reservation,
    apply_unit_event,
    burn_rate,
    pending_units,
    pool_rate,
    reserve,
    reserved_rate,
    roll,
    spent_today,
    summary,
    take_token,
)

MIDNIGHT = 20_000 * DAY_S
NOON = MIDNIGHT + DAY_S / 2
TOMORROW = MIDNIGHT + DAY_S


def event(unit: str, state: str, ts: float, usd: float = 3600.0, pool: str = "h100") -> UnitEvent:
    return UnitEvent(pool=pool, unit=unit, state=state, usd_per_hour=usd, ts=ts)  # type: ignore[arg-type]


def res(units: int, expires_at: float, pool: str = "h100", usd: float = 1.0) -> Reservation:
    return Reservation(pool=pool, units=units, usd_per_hour=usd, expires_at=expires_at)


# -- the day's end ------------------------------------------------------------------------------
def test_an_end_dated_just_past_midnight_closes_only_todays_part() -> None:
    ledger = apply_unit_event(Ledger(), event("u", "ready", TOMORROW - 10), TOMORROW - 10)
    ledger = apply_unit_event(ledger, event("u", "terminated", TOMORROW + 1), TOMORROW - 1)
    assert spent_today(ledger, TOMORROW - 0.5) == pytest.approx(10.0)  # 1 $/s for 10 s


def test_a_new_day_forgets_yesterdays_closed_spend_and_old_ends() -> None:
    ledger = apply_unit_event(Ledger(), event("a", "ready", NOON), NOON)
    ledger = apply_unit_event(ledger, event("a", "terminated", NOON + 10), NOON + 10)
    ended = {"old": MIDNIGHT - 1, "edge": MIDNIGHT, "a": NOON + 10}
    ledger = msgspec.structs.replace(ledger, ended=ended)
    assert spent_today(ledger, NOON + 20) == pytest.approx(10.0)
    rolled = roll(ledger, TOMORROW + 5)
    assert (rolled.day, rolled.closed_usd) == (20_001, 0.0)
    assert rolled.ended == {"edge": MIDNIGHT, "a": NOON + 10}  # yesterday's kept, older gone
    assert spent_today(rolled, TOMORROW + 5) == 0.0


def test_reservations_run_out_at_their_time_and_empty_ones_go() -> None:
    ledger = Ledger(
        reservations={
            "due": res(2, NOON),
            "empty": res(0, NOON + 60),
            "live": res(1, NOON + 60, pool="l40s"),
        }
    )
    assert reserved_rate(ledger, NOON) == 1.0  # one expiring now no longer counts
    assert pending_units(ledger, "h100", NOON) == 0
    assert pending_units(ledger, "l40s", NOON) == 1
    assert pending_units(ledger, "h100", NOON - 1) == 2
    assert list(roll(ledger, NOON).reservations) == ["live"]
    quiet = Ledger(reservations={"live": res(1, NOON + 60)})
    assert roll(quiet, NOON).reservations == quiet.reservations


# -- billing --------------------------------------------------------------------------------------
def test_a_price_change_closes_the_old_rate_and_bills_the_new_one() -> None:
    ledger = apply_unit_event(Ledger(), event("u", "ready", NOON, usd=2.0), NOON)
    ledger = apply_unit_event(ledger, event("u", "ready", NOON + HOUR_S, usd=3.0), NOON + HOUR_S)
    assert burn_rate(ledger) == 3.0 and ledger.closed_usd == pytest.approx(2.0)
    assert spent_today(ledger, NOON + 2 * HOUR_S) == pytest.approx(5.0)
    same = apply_unit_event(ledger, event("u", "draining", NOON + 2 * HOUR_S, usd=3.0), NOON)
    assert same == ledger  # the same price again changes nothing
    assert pool_rate(ledger, "h100") == (1, 3.0) and pool_rate(ledger, "l40s") == (0, 0.0)


def test_a_price_change_dated_before_billing_began_keeps_the_start() -> None:
    ledger = apply_unit_event(Ledger(), event("u", "ready", NOON, usd=2.0), NOON)
    ledger = apply_unit_event(ledger, event("u", "ready", NOON - 60, usd=4.0), NOON + 60)
    assert ledger.units["h100/u"].since == NOON and ledger.closed_usd == 0.0
    assert spent_today(ledger, NOON + HOUR_S) == pytest.approx(4.0)


def test_units_of_two_pools_are_told_apart() -> None:
    ledger = apply_unit_event(Ledger(), event("a", "ready", NOON, usd=2.0), NOON)
    ledger = apply_unit_event(ledger, event("b", "ready", NOON, 5.0, pool="l40s"), NOON)
    assert pool_rate(ledger, "h100") == (1, 2.0) and pool_rate(ledger, "l40s") == (1, 5.0)


def test_a_price_that_is_not_a_number_bills_nothing() -> None:
    ledger = apply_unit_event(Ledger(), event("u", "ready", NOON, usd=float("nan")), NOON)
    assert burn_rate(ledger) == 0.0 and spent_today(ledger, NOON + HOUR_S) == 0.0


def test_an_end_dated_exactly_the_skew_before_billing_began_is_believed() -> None:
    ledger = apply_unit_event(Ledger(), event("u", "ready", NOON), NOON)
    at_edge = apply_unit_event(ledger, event("u", "failed", NOON - MAX_CLOCK_SKEW_S), NOON + 5)
    assert at_edge.units == {} and spent_today(at_edge, NOON + 5) == 0.0


# -- rate limits -----------------------------------------------------------------------------------
def test_a_bucket_refills_at_its_rate_per_second_and_never_early() -> None:
    ledger = Ledger()
    for _ in range(60):
        ledger, ok = take_token(ledger, "a", 60.0, NOON)
        assert ok
    assert take_token(ledger, "a", 60.0, NOON)[1] is False  # none back in no time
    assert take_token(ledger, "a", 60.0, NOON + 0.5)[1] is False  # half a token
    later, ok = take_token(ledger, "a", 60.0, NOON + 1.0)
    assert ok and take_token(later, "a", 60.0, NOON + 1.0)[1] is False


def test_another_requester_does_not_refill_an_empty_bucket() -> None:
    ledger = Ledger()
    for _ in range(60):
        ledger, _ = take_token(ledger, "a", 60.0, NOON)
    ledger, _ = take_token(ledger, "b", 60.0, NOON + 1.0)
    ledger, ok = take_token(ledger, "a", 60.0, NOON + 1.0)
    assert ok and take_token(ledger, "a", 60.0, NOON + 1.0)[1] is False
    # a bucket full again carries no state
    ledger, _ = take_token(ledger, "b", 60.0, NOON + 120.0)
    assert set(ledger.buckets) == {"b"}


# -- what people see ---------------------------------------------------------------
def test_the_summary_gives_the_days_figures_rounded() -> None:
    ledger = apply_unit_event(Ledger(), event("u", "ready", MIDNIGHT, usd=1.0), MIDNIGHT)
    ledger = reserve(ledger, "c1", res(2, NOON + 60, usd=0.5))
    assert summary(ledger, NOON) == {
        "spent_today_usd": 12.0,
        "burn_usd_per_hour": 1.0,
        "reserved_usd_per_hour": 1.0,
        "projected_today_usd": 36.0,
        "hours_left": 12.0,
    }
    odd = summary(Ledger(), MIDNIGHT + 1)
    assert odd["hours_left"] == 23.9997 and odd["spent_today_usd"] == 0.0
    tiny = apply_unit_event(Ledger(), event("u", "ready", NOON, usd=1e-7), NOON)
    assert summary(tiny, NOON + 1)["burn_usd_per_hour"] == 0.0  # rounded to the micro-dollar


def test_a_price_change_adds_to_the_days_closed_spend() -> None:
    ledger = apply_unit_event(Ledger(), event("a", "ready", NOON, usd=2.0), NOON)
    ledger = apply_unit_event(ledger, event("a", "terminated", NOON + HOUR_S), NOON + HOUR_S)
    ledger = apply_unit_event(ledger, event("b", "ready", NOON, usd=1.0), NOON + HOUR_S)
    ledger = apply_unit_event(ledger, event("b", "ready", NOON + HOUR_S, 5.0), NOON + HOUR_S)
    assert ledger.closed_usd == pytest.approx(3.0)  # a's 2 $ and b's first hour


def test_an_event_with_no_command_settles_no_reservation() -> None:
    ledger = reserve(Ledger(), "XXXX", res(2, NOON + 600))
    after = apply_unit_event(ledger, event("u", "ready", NOON), NOON)
    assert after.reservations == ledger.reservations


def test_every_figure_is_rounded_to_the_micro_dollar_and_hours_to_4_places() -> None:
    ledger = apply_unit_event(Ledger(), event("u", "ready", NOON, usd=1 / 3), NOON)
    ledger = reserve(ledger, "c1", res(1, NOON + 600, usd=1 / 7))
    figures = summary(ledger, NOON + 1)
    assert figures == {
        "spent_today_usd": 9.3e-05,
        "burn_usd_per_hour": 0.333333,
        "reserved_usd_per_hour": 0.142857,
        "projected_today_usd": 5.714246,  # 9.3e-05 + (1/3 + 1/7) x (12 h - 1 s)
        "hours_left": 11.9997,
    }
