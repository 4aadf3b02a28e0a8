"""The watcher's rules at their exact edges, with plain values: which late event may
revive a failed unit, when silence or sickness fails one, what counts toward a pool."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.events import UnitEvent
from contracts.telemetry import UnitTelemetry
from services.watcher.units import (
    Failure,
    UnitTable,
    apply_event,
    check_telemetry,
    failures,
    forget_ended,
    ingest,
    mark_failed,
    unit_key,
)
from services.watcher.windows import PoolSample, PoolWindow, aggregate, with_external

KEY = unit_key("p", "u1")


def tel(**kw: Any) -> UnitTelemetry:
    return UnitTelemetry(pool="p", unit="u1", **kw)


def event(state: str, ts: float) -> UnitEvent:
    return UnitEvent(pool="p", unit="u1", state=state, ts=ts)  # type: ignore[arg-type]


def failed_at_100() -> UnitTable:
    table = UnitTable()
    ingest(table, KEY, tel(capacity=4), 90.0)
    apply_event(table, event("failed", 100.0), 100.0)
    return table


# -- reviving a failed unit ----------------------------------------------------------------
def test_an_event_dated_when_the_unit_failed_is_a_replay_and_changes_nothing() -> None:
    table = failed_at_100()
    apply_event(table, event("ready", 100.0), 150.0)
    rec = table.units[KEY]
    assert (rec.state, rec.failed_at) == ("failed", 100.0)
    assert aggregate(table, 150.0, 1.0, 10.0)["p"].ready == 0


def test_an_event_dated_after_the_failure_starts_a_new_life() -> None:
    table = failed_at_100()
    apply_event(table, event("booting", 100.001), 150.0)
    rec = table.units[KEY]
    assert (rec.state, rec.failed_at, rec.last, rec.last_seen) == ("booting", None, None, None)
    assert aggregate(table, 150.0, 1.0, 10.0)["p"].pending == 1


def test_a_failed_unit_ignores_heartbeats_until_an_event_revives_it() -> None:
    table = failed_at_100()
    ingest(table, KEY, tel(capacity=4, completed=7), 120.0)
    assert table.units[KEY].last_seen == 90.0 and table.arrivals == {}


def test_a_second_terminal_event_keeps_the_first_time() -> None:
    table = failed_at_100()
    apply_event(table, event("terminated", 130.0), 130.0)
    assert (table.units[KEY].state, table.units[KEY].failed_at) == ("terminated", 100.0)


def test_a_ready_event_starts_the_heartbeat_clock_only_for_a_unit_never_heard() -> None:
    table = UnitTable()
    apply_event(table, event("booting", 10.0), 10.0)
    apply_event(table, event("ready", 20.0), 20.0)
    assert table.units[KEY].watched_since == 20.0
    heard = UnitTable()
    ingest(heard, KEY, tel(), 5.0)
    apply_event(heard, event("ready", 20.0), 20.0)
    assert heard.units[KEY].watched_since == 5.0
    apply_event(table, event("ready", 30.0), 30.0)  # ready again: the clock keeps running
    assert table.units[KEY].watched_since == 20.0


def test_a_new_request_forgets_the_old_heartbeats() -> None:
    table = UnitTable()
    ingest(table, KEY, tel(healthy=False), 5.0)
    apply_event(table, event("requested", 6.0), 6.0)
    rec = table.units[KEY]
    assert (rec.last, rec.last_seen, rec.unhealthy_streak) == (None, None, 0)


# -- failing a unit ---------------------------------------------------------------------------
def test_silence_fails_a_unit_at_the_timeout_to_the_second() -> None:
    table = UnitTable()
    ingest(table, KEY, tel(), 100.0)
    assert failures(table, 109.999, 10.0, 3) == []
    (f,) = failures(table, 110.0, 10.0, 3)
    assert (f.key, f.pool, f.unit) == (KEY, "p", "u1")
    assert f.reason == "last heartbeat for 10.0 s (timeout 10 s)"


def test_a_ready_unit_that_never_spoke_fails_from_when_it_became_ready() -> None:
    table = UnitTable()
    apply_event(table, event("ready", 50.0), 50.0)
    assert failures(table, 59.9, 10.0, 3) == []
    (f,) = failures(table, 60.0, 10.0, 3)
    assert f.reason == "no heartbeat for 10.0 s (timeout 10 s)"


def test_sickness_fails_a_unit_at_the_limit_not_before() -> None:
    table = UnitTable()
    for _ in range(2):
        ingest(table, KEY, tel(healthy=False), 1.0)
    assert failures(table, 1.0, 10.0, 3) == []
    ingest(table, KEY, tel(healthy=False), 1.0)
    (f,) = failures(table, 1.0, 10.0, 3)
    assert f.reason == "reported unhealthy 3 times in a row"


def test_ended_and_already_failed_units_are_not_failed_again() -> None:
    table = UnitTable()
    ingest(table, KEY, tel(), 0.0)
    (f,) = failures(table, 100.0, 10.0, 3)
    mark_failed(table, [f], 100.0)
    assert (table.units[KEY].state, table.units[KEY].failed_at) == ("failed", 100.0)
    assert failures(table, 500.0, 10.0, 3) == []
    ended = UnitTable()
    ingest(ended, KEY, tel(), 0.0)
    ended.units[KEY].state = "terminated"
    assert failures(ended, 500.0, 10.0, 3) == []
    mark_failed(ended, [Failure("fleet.telemetry.p.gone", "p", "gone", "silent")], 1.0)
    assert list(ended.units) == [KEY]  # a unit already forgotten is not brought back


def test_ended_units_are_forgotten_after_keep_s_not_at_it() -> None:
    table = failed_at_100()
    assert forget_ended(table, 160.0, 60.0) == 0 and KEY in table.units
    assert forget_ended(table, 160.001, 60.0) == 1 and table.units == {}


# -- believable telemetry ------------------------------------------------------------------------
def test_load_up_to_the_ratio_of_capacity_is_believed() -> None:
    subject = "fleet.telemetry.p.u1"
    assert check_telemetry(tel(inflight=400, capacity=4), subject, 100.0) is None
    assert check_telemetry(tel(inflight=100, capacity=0.5), subject, 100.0) is None
    assert check_telemetry(tel(inflight=400.5, capacity=4), subject, 100.0) == (
        "inflight 400.5 is over 100 x capacity 4; the unit's telemetry is broken"
    )
    assert check_telemetry(tel(queue_depth=400_000, capacity=4), subject, 100.0) is None
    assert check_telemetry(tel(queue_depth=400_001, capacity=4), subject, 100.0) == (
        "queue_depth 400001 is absurd for capacity 4"
    )
    assert check_telemetry(tel(queue_depth=100_001, capacity=0), subject, 100.0) is not None


def test_a_known_subject_is_not_checked_again() -> None:
    assert check_telemetry(tel(), "fleet.telemetry.p.other", 100.0, subject_known=True) is None
    assert check_telemetry(tel(), "fleet.telemetry.p.other", 100.0) == (
        "subject fleet.telemetry.p.other does not match pool 'p' and unit 'u1' in the body"
    )


# -- arrivals and pools ----------------------------------------------------------------------------
def test_arrivals_count_completions_and_growth_never_a_shrink() -> None:
    table = UnitTable()
    ingest(table, KEY, tel(inflight=2, completed=3), 0.0)
    assert table.arrivals == {"p": 3.0}
    ingest(table, KEY, tel(inflight=1, queue_depth=0, completed=1), 1.0)  # 1 done, 1 fewer
    assert table.arrivals == {"p": 3.0}
    ingest(table, KEY, tel(inflight=4, queue_depth=2, completed=1), 2.0)
    assert table.arrivals == {"p": 9.0}


def test_stale_telemetry_adds_nothing_and_fresh_means_younger_than_fresh_s() -> None:
    table = UnitTable()
    ingest(table, KEY, tel(inflight=2, capacity=4), 100.0)
    assert aggregate(table, 109.999, 1.0, 10.0)["p"].ready == 1
    stale = aggregate(table, 110.0, 1.0, 10.0)["p"]
    assert (stale.ready, stale.inflight, stale.capacity) == (0, 0.0, 0.0)


def test_a_draining_unit_holds_demand_but_adds_no_capacity() -> None:
    table = UnitTable()
    ingest(table, KEY, tel(inflight=3, capacity=4), 100.0)
    apply_event(table, event("draining", 100.0), 100.0)
    s = aggregate(table, 100.5, 1.0, 10.0)["p"]
    assert (s.ready, s.capacity, s.inflight) == (0, 0.0, 3.0)


def test_listed_pools_report_even_when_empty_and_arrivals_are_taken_once() -> None:
    table = UnitTable()
    table.arrivals["q"] = 5.0
    out = aggregate(table, 1.0, 2.0, 10.0, pools={"empty"})
    assert set(out) == {"empty", "q"} and out["q"].arrivals == 5.0 and out["q"].dt == 2.0
    assert aggregate(table, 2.0, 1.0, 10.0) == {}


@pytest.mark.parametrize(
    ("measure", "value", "field", "expected"),
    [
        ("inflight", 9.0, "inflight", 9.0),
        ("inflight", 1.0, "inflight", 4.0),  # never lowered
        ("queue_depth", 7.0, "queue_depth", 7.0),
        ("queue_depth", 1.0, "queue_depth", 2.0),
        ("arrival_rate", 3.0, "arrivals", 6.0),  # a rate over the sample's 2 s
        ("arrival_rate", 0.5, "arrivals", 5.0),
    ],
)
def test_an_external_source_only_raises_demand(
    measure: Any, value: float, field: str, expected: float
) -> None:
    sample = PoolSample(t=1.0, dt=2.0, inflight=4.0, queue_depth=2.0, arrivals=5.0)
    assert getattr(with_external(sample, measure, value), field) == expected


# -- windows --------------------------------------------------------------------------------
def test_utilization_is_demand_over_capacity_capped_at_one() -> None:
    def util(inflight: float, capacity: float) -> float:
        window = PoolWindow()
        window.add(PoolSample(t=1.0, dt=1.0, inflight=inflight, capacity=capacity), 1.0)
        return window.metrics("p").utilization

    assert util(2.0, 8.0) == 0.25
    assert util(16.0, 8.0) == 1.0
    assert util(1.0, 0.0) == 1.0  # demand and no capacity: fully used
    assert util(0.0, 0.0) == 0.0


def test_metrics_take_counts_from_the_latest_sample_and_average_demand() -> None:
    window = PoolWindow()
    window.add(PoolSample(t=1.0, dt=1.0, ready=1, pending=3, inflight=2, queue_depth=4), 2.0)
    window.add(
        PoolSample(t=2.0, dt=1.0, ready=2, pending=1, capacity=8, inflight=4, arrivals=6), 2.0
    )
    m = window.metrics("p")
    assert (m.ts, m.pool, m.units_ready, m.units_pending, m.capacity) == (2.0, "p", 2, 1, 8.0)
    assert (m.inflight, m.queue_depth, m.window_s, m.arrival_rate) == (3.0, 2.0, 2.0, 3.0)


def test_a_window_keeps_its_newest_sample_and_drops_only_whole_old_ones() -> None:
    window = PoolWindow()
    window.add(PoolSample(t=1.0, dt=5.0, inflight=10), 1.0)
    assert len(window.samples) == 1  # longer than the window, but the only one
    window.add(PoolSample(t=2.0, dt=0.5, inflight=20), 1.0)
    assert len(window.samples) == 2  # without the first, 0.5 s would not fill 1 s
    window.add(PoolSample(t=3.0, dt=0.495, inflight=30), 1.0)
    assert [s.inflight for s in window.samples] == [20, 30]  # 0.995 s: full within 1 %


def test_every_unit_is_checked_whatever_comes_before_it() -> None:
    table = UnitTable()
    for name, healthy in (("ended", True), ("sick", False), ("quiet", True), ("late", True)):
        for _ in range(3 if not healthy else 1):
            ingest(
                table, unit_key("p", name), UnitTelemetry(pool="p", unit=name, healthy=healthy), 0.0
            )
    table.units[unit_key("p", "ended")].state = "terminated"
    table.units[unit_key("p", "late")].last_seen = 95.0
    out = failures(table, 100.0, 10.0, 3)
    assert [(f.key, f.pool, f.unit) for f in out] == [
        (unit_key("p", "sick"), "p", "sick"),
        (unit_key("p", "quiet"), "p", "quiet"),
    ]


def test_a_fraction_of_a_request_arriving_counts_and_a_shorter_queue_is_no_arrival() -> None:
    table = UnitTable()
    ingest(table, KEY, tel(completed=0.5), 0.0)
    assert table.arrivals == {"p": 0.5}
    ingest(table, KEY, tel(queue_depth=4.0), 1.0)
    ingest(table, KEY, tel(queue_depth=1.0, completed=2.0), 2.0)  # 2 done, queue 3 shorter
    assert table.arrivals == {"p": 4.5}


def test_each_pools_sample_is_stamped_with_the_tick() -> None:
    table = UnitTable()
    ingest(table, KEY, tel(capacity=4), 10.0)
    table.arrivals["q"] = 2.0
    out = aggregate(table, 10.5, 0.5, 10.0, pools={"empty"})
    assert {p: (s.t, s.dt) for p, s in out.items()} == {
        "empty": (10.5, 0.5),
        "p": (10.5, 0.5),
        "q": (10.5, 0.5),
    }


def test_a_pool_counts_every_live_unit_whatever_comes_first() -> None:
    table = UnitTable()
    apply_event(table, UnitEvent(pool="p", unit="gone", state="terminated", ts=1.0), 1.0)
    for name in ("b1", "b2"):
        apply_event(table, UnitEvent(pool="p", unit=name, state="booting", ts=1.0), 1.0)
    for name in ("r1", "r2"):  # ready, not heard from yet
        apply_event(table, UnitEvent(pool="p", unit=name, state="ready", ts=1.0), 1.0)
    apply_event(table, UnitEvent(pool="p", unit="d", state="draining", ts=1.0), 1.0)
    heard = unit_key("p", "old")
    ingest(table, heard, UnitTelemetry(pool="p", unit="old", capacity=4), 0.0)
    apply_event(table, UnitEvent(pool="p", unit="old", state="ready", ts=1.0), 1.0)
    table.arrivals["p"] = 3.0
    s = aggregate(table, 20.0, 1.0, 10.0)["p"]  # "old" spoke 20 s ago: stale, not ready
    assert (s.ready, s.pending, s.capacity, s.arrivals) == (2, 2, 0.0, 3.0)


def test_window_edges_an_empty_window_and_a_window_full_to_the_percent() -> None:
    window = PoolWindow()
    window.add(PoolSample(t=1.0, dt=0.0, arrivals=3.0), 0.0)
    m = window.metrics("p")
    assert (m.window_s, m.arrival_rate) == (1.0, 3.0)  # no time covered: per one second
    full = PoolWindow()
    full.add(PoolSample(t=1.0, dt=0.5, inflight=10), 1.0)
    full.add(PoolSample(t=2.0, dt=0.99, inflight=20), 1.0)
    assert [s.inflight for s in full.samples] == [20]  # 0.99 s of a 1 s window is full


def test_metrics_round_the_span_and_cap_at_the_contracts_limits() -> None:
    window = PoolWindow()
    window.add(PoolSample(t=1.0, dt=1 / 3, inflight=1.0, capacity=0.5), 10.0)
    m = window.metrics("p")
    assert (m.window_s, m.utilization) == (0.333333, 1.0)
    half = PoolWindow()
    half.add(PoolSample(t=1.0, dt=1.0, inflight=0.25, capacity=0.5), 1.0)
    assert half.metrics("p").utilization == 0.5
    huge = PoolWindow()
    huge.add(
        PoolSample(
            t=1.0,
            dt=1.0,
            ready=2_000_000,
            pending=2_000_000,
            inflight=2e9,
            capacity=2e9,
            queue_depth=2e9,
            arrivals=2e9,
        ),
        1.0,
    )
    m = huge.metrics("p")
    assert (m.units_ready, m.units_pending) == (1_000_000, 1_000_000)
    assert (m.inflight, m.capacity, m.queue_depth, m.arrival_rate) == (1e9, 1e9, 1e9, 1e9)
