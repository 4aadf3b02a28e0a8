"""The watcher's unit table: what each unit last said, and which units have failed.

`ingest` folds one heartbeat into the table (the hot path: a dict lookup and a
few assignments), `apply_event` folds one lifecycle event, and `failures`
decides, purely from the table and the time, which units must be declared
failed. The service publishes what `failures` returns and then calls
`mark_failed`, so a unit is failed once only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.events import TERMINAL_STATES, UnitEvent
from contracts.telemetry import UnitTelemetry

PENDING_STATES = frozenset({"requested", "booting"})
"""Lifecycle states of a unit that is coming but not serving yet."""

TELEMETRY_PREFIX = "fleet.telemetry."


@dataclass(slots=True)
class UnitRecord:
    """One unit as the watcher knows it."""

    pool: str
    unit: str
    state: str = ""
    """Last lifecycle state from a UnitEvent; empty when only telemetry was seen."""
    watched_since: float = 0.0
    """When the watcher started expecting heartbeats (first telemetry or `ready`), unix s."""
    last_seen: float | None = None
    """When the last heartbeat arrived, unix s; None before the first one."""
    last: UnitTelemetry | None = None
    unhealthy_streak: int = 0
    """Heartbeats in a row with healthy=false."""
    failed_at: float | None = None
    """When the unit was declared failed (by us or by an event), unix s."""


@dataclass(slots=True)
class UnitTable:
    """All units, keyed by their telemetry subject, and per-pool arrivals since the last tick."""

    units: dict[str, UnitRecord] = field(default_factory=dict)
    arrivals: dict[str, float] = field(default_factory=dict)
    """Requests that arrived per pool since the last `take_arrivals`."""


@dataclass(frozen=True, slots=True)
class Failure:
    """A unit the watcher must declare failed, and why."""

    key: str
    pool: str
    unit: str
    reason: str


def unit_key(pool: str, unit: str) -> str:
    """The table key of a unit: its telemetry subject."""
    return f"{TELEMETRY_PREFIX}{pool}.{unit}"


def check_telemetry(
    t: UnitTelemetry, subject: str, max_load_ratio: float, subject_known: bool = False
) -> str | None:
    """Why a decoded heartbeat is still nonsense, or None when it is believable.

    The contract types already reject negative, non-finite and huge values; this
    adds what needs two fields or the subject to see. `subject_known`: the table
    already holds this subject for this pool and unit, so it needs no new check.
    """
    if not subject_known and subject != f"{TELEMETRY_PREFIX}{t.pool}.{t.unit}":
        return f"subject {subject} does not match pool {t.pool!r} and unit {t.unit!r} in the body"
    if t.inflight > max_load_ratio * max(t.capacity, 1.0):
        return (
            f"inflight {t.inflight:g} is over {max_load_ratio:g} x capacity {t.capacity:g}; "
            "the unit's telemetry is broken"
        )
    if t.queue_depth > max_load_ratio * 1000 * max(t.capacity, 1.0):
        return f"queue_depth {t.queue_depth:g} is absurd for capacity {t.capacity:g}"
    return None


def ingest(table: UnitTable, key: str, t: UnitTelemetry, now: float) -> None:
    """Fold one (checked) heartbeat into the table."""
    rec = table.units.get(key)
    if rec is None:
        rec = table.units[key] = UnitRecord(t.pool, t.unit, watched_since=now)
    elif rec.failed_at is not None:
        return  # a failed unit stays failed until a new lifecycle event revives it
    prev = rec.last
    if prev is None:
        arrived = t.completed
    else:
        arrived = t.completed + (t.inflight - prev.inflight) + (t.queue_depth - prev.queue_depth)
    if arrived > 0:
        arrivals = table.arrivals
        arrivals[t.pool] = arrivals.get(t.pool, 0.0) + arrived
    rec.last = t
    rec.last_seen = now
    rec.unhealthy_streak = 0 if t.healthy else rec.unhealthy_streak + 1


def apply_event(table: UnitTable, ev: UnitEvent, now: float) -> None:
    """Fold one lifecycle event: pending units appear, terminal ones stop counting."""
    key = unit_key(ev.pool, ev.unit)
    rec = table.units.get(key)
    if rec is None:
        rec = table.units[key] = UnitRecord(ev.pool, ev.unit, watched_since=now)
    if ev.state in TERMINAL_STATES:
        rec.state = ev.state
        if rec.failed_at is None:
            rec.failed_at = now
        return
    if rec.failed_at is not None and ev.ts <= rec.failed_at:
        return  # an older event replayed after the unit ended
    if rec.failed_at is not None or ev.state == "requested":
        # A new life for this unit id: forget the old one's heartbeats.
        rec.failed_at, rec.last, rec.last_seen, rec.unhealthy_streak = None, None, None, 0
    if ev.state == "ready" and rec.state != "ready" and rec.last_seen is None:
        rec.watched_since = now  # heartbeats are expected from now on
    rec.state = ev.state


def failures(
    table: UnitTable, now: float, heartbeat_timeout_s: float, unhealthy_limit: int
) -> list[Failure]:
    """Units that must now be declared failed: silent too long, or unhealthy too often.

    Only units that have sent telemetry at least once or are `ready` are
    expected to send heartbeats; units already failed or ended are skipped.
    """
    out: list[Failure] = []
    for key, rec in table.units.items():
        if rec.failed_at is not None or rec.state in TERMINAL_STATES:
            continue
        if rec.unhealthy_streak >= unhealthy_limit:
            out.append(
                Failure(
                    key,
                    rec.pool,
                    rec.unit,
                    f"reported unhealthy {rec.unhealthy_streak} times in a row",
                )
            )
            continue
        if rec.last_seen is None and rec.state != "ready":
            continue
        seen = rec.last_seen if rec.last_seen is not None else rec.watched_since
        silent = now - seen
        if silent >= heartbeat_timeout_s:
            what = "no heartbeat" if rec.last_seen is None else "last heartbeat"
            out.append(
                Failure(
                    key,
                    rec.pool,
                    rec.unit,
                    f"{what} for {silent:.1f} s (timeout {heartbeat_timeout_s:g} s)",
                )
            )
    return out


def mark_failed(table: UnitTable, failed: list[Failure], now: float) -> None:
    """Record that these units were declared failed, so they are never failed twice."""
    for f in failed:
        rec = table.units.get(f.key)
        if rec is not None:
            rec.failed_at = now
            rec.state = "failed"


def forget_ended(table: UnitTable, now: float, keep_s: float) -> int:
    """Drop units that ended more than `keep_s` ago; returns how many were dropped."""
    gone = [
        k for k, r in table.units.items() if r.failed_at is not None and now - r.failed_at > keep_s
    ]
    for k in gone:
        del table.units[k]
    return len(gone)
