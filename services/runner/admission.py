"""Admission on a runner, as pure decisions over plain values: whether a request gets a
slot now, waits in the queue, or sends the runner out of the rpc queue group; and
whether a tenant may open one more session.

A runner executes at most `max_sessions` tasks of an agent at once; further
requests wait (the queue depth in telemetry). Once `max_sessions + max_queue`
are taken it leaves the queue group, so NATS sends new requests to other
runners, and it rejoins when a slot is free again. A tenant holds at most
`quota` live sessions (not idle for `idle_s`); a new one past that is refused
with QUOTA_EXCEEDED, and no task is created. The runner's host (host.py)
applies these decisions; the session store applies `admit_session` with
compare-and-set on the tenant's index (sessions.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import msgspec

from contracts.a2a import QUOTA_EXCEEDED
from services.a2a.tenants import Refused

Membership = Literal["join", "leave"] | None


@dataclass(frozen=True, slots=True)
class Capacity:
    """What one runner takes for one agent."""

    max_sessions: int
    """Tasks executing at once."""
    max_queue: int
    """Requests waiting for a slot before the runner leaves the queue group."""


@dataclass(frozen=True, slots=True)
class Load:
    """Slots taken on one runner for one agent."""

    inflight: int = 0
    """Tasks executing."""
    waiting: int = 0
    """Requests waiting for a slot."""

    @property
    def taken(self) -> int:
        return self.inflight + self.waiting


def arrived(load: Load) -> Load:
    """A request starts waiting for a slot."""
    return replace(load, waiting=load.waiting + 1)


def admitted(load: Load) -> Load:
    """A waiting request got its slot."""
    return replace(load, waiting=load.waiting - 1, inflight=load.inflight + 1)


def gave_up(load: Load) -> Load:
    """A waiting request left without a slot (its caller went away)."""
    return replace(load, waiting=load.waiting - 1)


def released(load: Load) -> Load:
    """A task ended and gave its slot back."""
    return replace(load, inflight=load.inflight - 1)


def membership(load: Load, cap: Capacity, *, joined: bool, draining: bool) -> Membership:
    """`leave` the rpc queue group when slots and queue are full, `join` it again once a
    slot is free (never while draining), else None."""
    if joined and load.taken >= cap.max_sessions + cap.max_queue:
        return "leave"
    if not joined and not draining and load.taken < cap.max_sessions:
        return "join"
    return None


class TenantIndex(msgspec.Struct, kw_only=True):
    """A tenant's live sessions: session key -> last seen (unix seconds)."""

    tenant: str
    live: dict[str, float] = msgspec.field(default_factory=dict)


class QuotaFull(Exception):
    """The tenant holds as many live sessions as its quota allows."""

    def __init__(self, tenant: str, live: int, quota: int) -> None:
        super().__init__(
            f"tenant {tenant!r} already has {live} live sessions, its quota of {quota}; "
            "continue an existing session (same contextId) or wait for one to go idle"
        )
        self.tenant = tenant
        self.live = live
        self.quota = quota


def admit_session(
    index: TenantIndex, key: str, now: float, idle_s: float, quota: int
) -> TenantIndex:
    """The index with session `key` seen at `now`, expired sessions dropped; QuotaFull
    when `key` is new and the tenant already holds `quota` live sessions."""
    live = {k: ts for k, ts in index.live.items() if now - ts < idle_s}
    if key not in live and len(live) >= quota:
        raise QuotaFull(index.tenant, len(live), quota)
    live[key] = now
    return TenantIndex(tenant=index.tenant, live=live)


def refusal(exc: QuotaFull) -> Refused:
    """The JSON-RPC refusal a caller over its session quota gets."""
    return Refused(
        QUOTA_EXCEEDED,
        str(exc),
        {"tenant": exc.tenant, "liveSessions": exc.live, "maxSessions": exc.quota},
    )
