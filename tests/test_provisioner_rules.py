"""The provisioner's rules at their exact edges, with plain values: when a breaker
lets the probe through, when a draining unit may go, which idle units are handed back."""

from __future__ import annotations

import pytest

from services.provisioner import breaker as br
from services.provisioner import reconcile
from services.provisioner.drain import STALE_S, drain_verdict, idle_to_release
from services.provisioner.inventory import Load, Unit
from services.provisioner.providers.base import ProviderUnit

POLICY = br.BreakerPolicy(failure_threshold=3, cooldown_s=30.0)
OPENED = br.Breaker(state="open", failures=3, opened_ts=100.0)


# -- the breaker -----------------------------------------------------------------------
def test_an_open_breaker_refuses_until_the_cooldown_has_passed_to_the_second() -> None:
    assert br.allow(OPENED, 129.999, POLICY) == (OPENED, False, None)
    assert br.is_open(OPENED, 129.999, POLICY)
    probe, ok, moved = br.allow(OPENED, 130.0, POLICY)
    assert (ok, moved, probe.state, probe.probing) == (True, "half_opened", "half_open", True)
    assert not br.is_open(OPENED, 130.0, POLICY)


def test_a_half_open_breaker_lets_one_probe_out_at_a_time() -> None:
    waiting = br.Breaker(state="half_open", failures=3, opened_ts=100.0, probing=False)
    probe, ok, moved = br.allow(waiting, 140.0, POLICY)
    assert (ok, moved, probe.probing) == (True, None, True)
    assert br.allow(probe, 140.0, POLICY) == (probe, False, None)
    assert not br.is_open(probe, 140.0, POLICY)  # half-open is not "refusing everything"


def test_the_breaker_opens_at_the_threshold_not_before() -> None:
    b, moved = br.on_failure(br.Breaker(failures=1), 50.0, POLICY)
    assert (b, moved) == (br.Breaker(failures=2), None)
    b, moved = br.on_failure(b, 51.0, POLICY)
    assert (b, moved) == (br.Breaker(state="open", failures=3, opened_ts=51.0), "opened")


def test_failures_while_open_change_nothing_and_a_failed_probe_reopens_from_now() -> None:
    assert br.on_failure(OPENED, 110.0, POLICY) == (OPENED, None)
    probing = br.Breaker(state="half_open", failures=3, opened_ts=100.0, probing=True)
    b, moved = br.on_failure(probing, 135.0, POLICY)
    assert (b, moved) == (br.Breaker(state="open", failures=4, opened_ts=135.0), "opened")


def test_a_failed_probe_reopens_whatever_the_threshold_is_now() -> None:
    probing = br.Breaker(state="half_open", failures=3, opened_ts=100.0, probing=True)
    patient = br.BreakerPolicy(failure_threshold=10, cooldown_s=30.0)
    b, moved = br.on_failure(probing, 140.0, patient)
    assert (b, moved) == (br.Breaker(state="open", failures=4, opened_ts=140.0), "opened")


def test_a_success_closes_and_forgets() -> None:
    clean = br.Breaker()
    assert br.on_success(clean) == (clean, None)
    assert br.on_success(br.Breaker(failures=1)) == (br.Breaker(), None)
    assert br.on_success(br.Breaker(failures=2)) == (br.Breaker(), None)
    probing = br.Breaker(state="half_open", failures=3, opened_ts=100.0, probing=True)
    assert br.on_success(probing) == (br.Breaker(), "closed")
    assert br.allow(clean, 0.0, POLICY) == (clean, True, None)


def test_the_default_policy_is_five_failures_and_thirty_seconds() -> None:
    assert br.BreakerPolicy() == br.BreakerPolicy(failure_threshold=5, cooldown_s=30.0)
    assert br.Breaker() == br.Breaker(state="closed", failures=0, opened_ts=0.0, probing=False)


# -- drains ------------------------------------------------------------------------------
def unit(name: str, state: str = "ready", **kw: object) -> Unit:
    return Unit(unit=name, pool=str(kw.pop("pool", "p")), provider="sim", state=state, **kw)  # type: ignore[arg-type]


DRAINING = unit("d", "draining", drain_started_ts=100.0)


def test_a_draining_unit_waits_for_work_in_flight_until_the_deadline_to_the_second() -> None:
    busy = Load(inflight=2.0, seen_ts=129.0)
    assert drain_verdict(DRAINING, busy, 129.999, deadline_s=30.0) is None
    assert drain_verdict(DRAINING, busy, 130.0, deadline_s=30.0) == (
        "drain deadline of 30s passed with 2 in flight"
    )


def test_a_draining_unit_with_nothing_in_flight_or_no_recent_telemetry_goes_now() -> None:
    drained = "drained: nothing in flight"
    assert drain_verdict(DRAINING, None, 101.0, 30.0) == drained
    assert drain_verdict(DRAINING, Load(inflight=0.0, seen_ts=101.0), 101.0, 30.0) == drained
    fresh = Load(inflight=1.0, seen_ts=101.0)
    assert drain_verdict(DRAINING, fresh, 101.0 + STALE_S, 30.0) is None  # 5 s old: still news
    assert drain_verdict(DRAINING, fresh, 101.0 + STALE_S + 0.001, 30.0) == drained
    assert STALE_S == 5.0


def test_only_draining_units_are_drained() -> None:
    for state in ("requested", "booting", "ready", "terminated", "failed"):
        assert drain_verdict(unit("u", state), None, 0.0, 30.0) is None


def test_a_drain_with_no_start_time_counts_from_now() -> None:
    started_unknown = unit("d", "draining")
    busy = Load(inflight=1.0, seen_ts=100.0)
    assert drain_verdict(started_unknown, busy, 100.0, deadline_s=1.0) is None
    assert drain_verdict(started_unknown, busy, 100.0, deadline_s=0.0) is not None


# -- idle cleanup ----------------------------------------------------------------------------
NOW = 10_000.0


def idle(seconds: float, seen_ago: float = 0.0) -> Load:
    return Load(idle_s=seconds, seen_ts=NOW - seen_ago)


def names(units: list[Unit]) -> list[str]:
    return [u.unit for u in units]


def test_a_unit_idle_exactly_the_limit_is_handed_back() -> None:
    units = [unit("a"), unit("b")]
    loads = {"a": idle(1800.0), "b": idle(1799.9)}
    assert names(idle_to_release(units, loads, {"p": 1800.0}, {}, NOW)) == ["a"]


def test_idle_units_go_longest_idle_first_down_to_the_pool_minimum() -> None:
    units = [unit(n) for n in "abcd"]
    loads = {"a": idle(2000), "b": idle(4000), "c": idle(3000), "d": idle(10)}
    assert names(idle_to_release(units, loads, {"p": 1800}, {"p": 2}, NOW)) == ["b", "c"]
    assert names(idle_to_release(units, loads, {"p": 1800}, {"p": 0}, NOW)) == ["b", "c", "a"]
    assert names(idle_to_release(units, loads, {"p": 1800}, {"p": -3}, NOW)) == ["b", "c", "a"]
    assert idle_to_release(units, loads, {"p": 1800}, {"p": 9}, NOW) == []


def test_only_ready_units_with_fresh_telemetry_in_pools_with_a_limit_count() -> None:
    units = [unit("a"), unit("boot", "booting"), unit("stale"), unit("q", pool="q")]
    loads = {n: idle(5000) for n in ("a", "boot", "q")} | {"stale": idle(5000, STALE_S + 1)}
    assert names(idle_to_release(units, loads, {"p": 1800, "q": 0}, {}, NOW)) == ["a"]
    assert names(idle_to_release(units, {"a": idle(5000, STALE_S)}, {"p": 1800}, {}, NOW)) == ["a"]
    assert idle_to_release(units, loads, {}, {}, NOW) == []


def test_a_unit_already_asked_about_waits_before_it_is_asked_again() -> None:
    asked = unit("a", release_requested_ts=NOW - 299.0)
    other = unit("b")
    loads = {"a": idle(5000), "b": idle(4000)}
    # a is on its way out, so with a minimum of 1 the pool cannot give b up as well
    assert idle_to_release([asked, other], loads, {"p": 1800}, {"p": 1}, NOW) == []
    assert names(idle_to_release([asked, other], loads, {"p": 1800}, {}, NOW)) == ["b"]
    again = unit("a", release_requested_ts=NOW - 300.0)
    assert names(idle_to_release([again, other], loads, {"p": 1800}, {}, NOW)) == ["a", "b"]
    quick = idle_to_release([asked, other], loads, {"p": 1800}, {}, NOW, repeat_after_s=200.0)
    assert names(quick) == ["a", "b"]


# -- reconciliation ------------------------------------------------------------------------
def found(uid: str, status: str, label: str = "", address: str | None = None) -> ProviderUnit:
    return ProviderUnit(provider="sim", unit_id=uid, status=status, label=label, address=address)  # type: ignore[arg-type]


def tracked(name: str, state: str, pid: str = "", provider: str = "sim", **kw: object) -> Unit:
    return Unit(unit=name, pool="p", provider=provider, state=state, provider_unit_id=pid, **kw)  # type: ignore[arg-type]


def plan(units: list[Unit], listed: list[ProviderUnit], adopt: bool = True) -> list[object]:
    return list(reconcile.plan("sim", units, listed, {"p"}, adopt))


def test_a_unit_the_provider_reports_ready_is_ready_with_its_address() -> None:
    for state in ("requested", "booting"):
        steps = plan([tracked("a", state, "s-a")], [found("s-a", "ready", address="10.0.0.1")])
        assert steps == [reconcile.Ready("a", "10.0.0.1")]
    assert plan([tracked("a", "ready", "s-a")], [found("s-a", "ready")]) == []
    assert plan([tracked("a", "booting", "s-a")], [found("s-a", "booting")]) == []


@pytest.mark.parametrize("status", ["failed", "terminated", "stopped"])
def test_a_unit_gone_at_the_provider_is_lost_and_a_draining_one_just_ends(status: str) -> None:
    assert plan([tracked("a", "ready", "s-a")], [found("s-a", status)]) == [
        reconcile.Lost("a", "failed", f"sim reports it {status}")
    ]
    assert plan([tracked("d", "draining", "s-d")], [found("s-d", status)]) == [
        reconcile.Lost("d", "terminated", f"sim reports it {status}")
    ]


@pytest.mark.parametrize("status", ["failed", "stopped"])
def test_a_released_unit_seen_dead_while_it_is_destroyed_ends_terminated_not_failed(
    status: str,
) -> None:
    """A destroy kills the process and then waits for it; a listing in between sees it
    dead. That end is the one we asked for: no `failed` event, alert or replacement."""
    leaving = tracked("a", "ready", "s-a", released_by="cmd-1")
    assert plan([leaving], [found("s-a", status)]) == [
        reconcile.Lost("a", "terminated", f"sim reports it {status}")
    ]
    assert plan([leaving], []) == [
        reconcile.Lost("a", "terminated", "gone from sim while being released")
    ]


def test_a_unit_missing_from_the_list_is_lost_unless_it_had_no_id_yet() -> None:
    units = [
        tracked("b", "booting", "s-b"),
        tracked("r", "ready", "s-r"),
        tracked("d", "draining", "s-d"),
        tracked("f", "failed", "s-f"),
        tracked("done", "failed", "s-done", destroyed=True),
        tracked("t", "terminated", "s-t"),
        tracked("new", "requested"),
        tracked("elsewhere", "ready", "x-1", provider="vastai"),
    ]
    assert plan(units, []) == [
        reconcile.Lost("b", "failed", "vanished from sim's list"),
        reconcile.Lost("r", "failed", "vanished from sim's list"),
        reconcile.Lost("d", "terminated", "gone from sim while draining"),
        reconcile.Destroyed("f"),
    ]


def test_an_ended_unit_still_running_is_cleaned_up_and_one_gone_is_left_alone() -> None:
    for state in ("failed", "terminated"):
        (step,) = plan([tracked("a", state, "s-a")], [found("s-a", "ready")])
        assert step == reconcile.Cleanup(found("s-a", "ready"), f"a is {state} but still running")
        assert plan([tracked("a", state, "s-a")], [found("s-a", "stopped")]) == []


def test_units_labelled_as_ours_are_attached_adopted_or_cleaned_up() -> None:
    lost_write = found("s-n", "booting", "fleet.p.n")
    assert plan([tracked("n", "requested")], [lost_write]) == [reconcile.Attach("n", lost_write)]
    # a requested unit of another provider: this one is a duplicate from a failover
    assert plan([tracked("n", "requested", provider="vastai")], [lost_write]) == [
        reconcile.Cleanup(lost_write, "duplicate of n (kept none)")
    ]
    assert plan([tracked("n", "booting", "x-m", provider="vastai")], [lost_write]) == [
        reconcile.Cleanup(lost_write, "duplicate of n (kept x-m)")
    ]
    orphan = found("s-o", "ready", "fleet.p.o")
    assert plan([], [orphan]) == [reconcile.Adopt("p", "o", orphan)]
    assert plan([], [orphan], adopt=False) == [
        reconcile.Cleanup(orphan, "orphan labelled fleet.p.o; adoption is off")
    ]
    stranger = found("s-s", "ready", "fleet.q.s")
    assert plan([], [stranger]) == [
        reconcile.Cleanup(stranger, "orphan labelled fleet.q.s; pool 'q' is not configured")
    ]
    for quiet in (found("s-g", "terminated", "fleet.p.g"), found("s-z", "ready", "not-ours")):
        assert plan([], [quiet]) == []


def test_every_listed_unit_is_reconciled_whatever_comes_before_it() -> None:
    orphan = found("s-o", "ready", "fleet.p.o")
    units = [tracked("a", "failed", "s-a"), tracked("b", "booting", "s-b")]
    steps = plan(units, [orphan, found("s-a", "stopped"), found("s-b", "ready")])
    assert steps == [reconcile.Adopt("p", "o", orphan), reconcile.Ready("b", None)]


def test_idle_cleanup_goes_through_every_pool_and_every_unit() -> None:
    units = [unit("busy"), unit("idle"), unit("q1", pool="q"), unit("r1", pool="r")]
    loads = {"busy": idle(10), "idle": idle(5000), "q1": idle(5000), "r1": idle(2)}
    limits = {"p": 1800.0, "q": 0.0, "r": 1.0}  # q never cleans up; r after one second
    assert names(idle_to_release(units, loads, limits, {}, NOW)) == ["idle", "r1"]
