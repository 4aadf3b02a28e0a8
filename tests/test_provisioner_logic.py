"""The provisioner's pure decisions: breaker, lifecycle, idlest-first, drains, reconciliation."""

from __future__ import annotations

from services.provisioner import breaker as br
from services.provisioner import reconcile
from services.provisioner.drain import drain_verdict, idle_to_release
from services.provisioner.inventory import (
    Load,
    Unit,
    idempotency_key,
    parse_key,
    pick_idlest,
    transition,
    unit_name,
)
from services.provisioner.providers.base import ProviderUnit
from services.provisioner.providers.simworld import LoadPattern, demand

POLICY = br.BreakerPolicy(failure_threshold=3, cooldown_s=10)


def test_breaker_opens_after_threshold_then_probes_and_closes() -> None:
    b = br.Breaker()
    moves = []
    for _ in range(3):
        b, moved = br.on_failure(b, 100.0, POLICY)
        moves.append(moved)
    assert moves == [None, None, "opened"] and b.state == "open"
    b, ok, _ = br.allow(b, 105.0, POLICY)
    assert not ok  # still cooling down
    b, ok, moved = br.allow(b, 111.0, POLICY)
    assert ok and moved == "half_opened"
    _, ok2, _ = br.allow(b, 111.0, POLICY)
    assert not ok2  # one probe at a time
    b, moved = br.on_success(b)
    assert moved == "closed" and b.state == "closed" and b.failures == 0


def test_breaker_failed_probe_reopens() -> None:
    b = br.Breaker(state="open", failures=3, opened_ts=0.0)
    b, ok, _ = br.allow(b, 20.0, POLICY)
    b, moved = br.on_failure(b, 20.0, POLICY)
    assert ok and moved == "opened" and b.opened_ts == 20.0
    assert br.is_open(b, 25.0, POLICY)


def test_success_resets_the_failure_count() -> None:
    b, _ = br.on_failure(br.Breaker(), 0, POLICY)
    b, _ = br.on_failure(b, 0, POLICY)
    b, _ = br.on_success(b)
    b, moved = br.on_failure(b, 0, POLICY)
    assert moved is None and b.state == "closed"


def test_unit_names_and_keys_are_stable_and_parse_back() -> None:
    assert unit_name("cmd-1", 0) == unit_name("cmd-1", 0) != unit_name("cmd-1", 1)
    key = idempotency_key("gpu", unit_name("cmd-1", 0))
    assert parse_key(key) == ("gpu", unit_name("cmd-1", 0))
    assert parse_key("someone-elses-box") is None


def test_lifecycle_refuses_going_backwards() -> None:
    u = Unit(unit="u1", pool="p", provider="sim")
    booting = transition(u, "booting", 1.0)
    assert booting is not None and booting.state == "booting"
    ready = transition(booting, "ready", 2.0)
    assert ready is not None
    assert transition(ready, "booting", 3.0) is None
    draining = transition(ready, "draining", 4.0)
    assert draining is not None and draining.drain_started_ts == 4.0
    done = transition(draining, "terminated", 5.0)
    assert done is not None and transition(done, "ready", 6.0) is None


def _unit(name: str, state: str = "ready", created: float = 0.0) -> Unit:
    return Unit(unit=name, pool="p", provider="sim", state=state, created_ts=created)  # type: ignore[arg-type]


def test_idlest_first_booting_then_least_busy_longest_idle() -> None:
    units = [_unit("busy"), _unit("idle-long"), _unit("idle-short"), _unit("boot", "booting")]
    loads = {
        "busy": Load(inflight=3, idle_s=0),
        "idle-long": Load(inflight=0, idle_s=500),
        "idle-short": Load(inflight=0, idle_s=20),
    }
    assert [u.unit for u in pick_idlest(units, loads, 3)] == ["boot", "idle-long", "idle-short"]


def test_drain_waits_for_inflight_until_the_deadline() -> None:
    u = transition(_unit("u"), "draining", 100.0)
    assert u is not None
    busy = Load(inflight=2, seen_ts=101.0)
    assert drain_verdict(u, busy, 101.0, deadline_s=30) is None
    still_busy = Load(inflight=2, seen_ts=130.5)
    assert "deadline" in (drain_verdict(u, still_busy, 131.0, deadline_s=30) or "")
    assert "drained" in (drain_verdict(u, Load(inflight=0, seen_ts=102), 102.0, 30) or "")


def test_idle_cleanup_keeps_the_pool_minimum() -> None:
    units = [_unit(f"u{i}") for i in range(3)]
    loads = {f"u{i}": Load(idle_s=4000 + i, seen_ts=1000.0) for i in range(3)}
    out = idle_to_release(units, loads, {"p": 1800}, {"p": 1}, now=1000.0)
    assert [u.unit for u in out] == ["u2", "u1"]
    assert idle_to_release(units, loads, {"p": 0}, {}, now=1000.0) == []


def _pu(uid: str, status: str, label: str = "") -> ProviderUnit:
    return ProviderUnit(provider="sim", unit_id=uid, status=status, label=label)  # type: ignore[arg-type]


def test_reconcile_marks_ready_lost_adopts_and_cleans_up() -> None:
    tracked = [
        Unit(unit="a", pool="p", provider="sim", state="booting", provider_unit_id="s-a"),
        Unit(unit="b", pool="p", provider="sim", state="ready", provider_unit_id="s-b"),
        Unit(unit="c", pool="p", provider="sim2", state="ready", provider_unit_id="t-c"),
        Unit(unit="d", pool="p", provider="sim", state="requested", key="fleet.p.d"),
    ]
    listed = [
        _pu("s-a", "ready"),
        _pu("s-x", "ready", "fleet.p.x"),  # ours, unknown: adopt
        _pu("s-c", "ready", "fleet.p.c"),  # duplicate of c (lives on sim2)
        _pu("s-d", "booting", "fleet.p.d"),  # the create we lost track of
        _pu("s-q", "ready", "fleet.other.q"),  # ours, pool not configured
        _pu("s-z", "ready", "not-ours"),
    ]
    steps = reconcile.plan("sim", tracked, listed, {"p"})
    kinds = {type(s).__name__: s for s in steps}
    assert isinstance(kinds["Ready"], reconcile.Ready) and kinds["Ready"].unit == "a"
    assert isinstance(kinds["Lost"], reconcile.Lost) and kinds["Lost"].unit == "b"
    assert isinstance(kinds["Adopt"], reconcile.Adopt) and kinds["Adopt"].unit == "x"
    assert isinstance(kinds["Attach"], reconcile.Attach) and kinds["Attach"].unit == "d"
    cleaned = sorted(s.found.unit_id for s in steps if isinstance(s, reconcile.Cleanup))
    assert cleaned == ["s-c", "s-q"]
    assert all(getattr(s, "found", None) is None or s.found.unit_id != "s-z" for s in steps)


def test_demand_follows_the_day_and_bursts() -> None:
    p = LoadPattern(base=2, peak=10, period_s=100, burst_every_s=1000, burst_factor=3, burst_s=5)
    assert demand(p, 2000.0) == 6.0  # burst at t % 1000 < 5, trough of the day x3
    assert abs(demand(p, 2050.0) - 10.0) < 1e-9  # mid-period: the peak
    assert abs(demand(p, 2100.0) - 2.0) < 1e-9
