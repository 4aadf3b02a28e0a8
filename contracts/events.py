"""Lifecycle events, alerts, audit records and dead letters."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from contracts.base import Id, Message, Text, Token, Usd

UnitState = Literal["requested", "booting", "ready", "draining", "terminated", "failed"]
Severity = Literal["info", "warning", "critical"]

TERMINAL_STATES: frozenset[str] = frozenset({"terminated", "failed"})
"""States after which a unit costs nothing and never comes back."""

BILLED_STATES: frozenset[str] = frozenset({"booting", "ready", "draining"})
"""States in which a provider bills for the unit."""


class UnitEvent(Message, frozen=True, kw_only=True):
    """A unit's lifecycle step, on `fleet.unit.<pool>.<unit>`."""

    pool: Token
    unit: Token
    state: UnitState
    provider: Token = "unknown"
    gpu_model: str = ""
    usd_per_hour: Usd = 0.0
    reason: Text = ""
    command_id: str | None = None
    """The approved command that created or removed the unit."""
    address: str | None = None
    """Where the unit can be reached, when the provider says."""


class Alert(Message, frozen=True, kw_only=True):
    """Something an operator should look at, on `fleet.alert.<severity>`."""

    kind: Token
    message: Text
    severity: Severity = "warning"
    pool: str | None = None
    unit: str | None = None


class AuditRecord(Message, frozen=True, kw_only=True):
    """A decision and why it was taken, on `fleet.audit.<actor>`."""

    actor: Token
    action: Annotated[str, Meta(max_length=128)]
    reasoning: Text = ""
    result: Text = ""
    cost_impact_usd_per_hour: Annotated[float, Meta(ge=-1e7, le=1e7)] = 0.0
    refs: dict[str, str] = msgspec.field(default_factory=dict)
    """Ids this decision refers to, e.g. {"request": "...", "unit": "..."}."""
    id: Id | None = None


class PingRequest(msgspec.Struct, frozen=True):
    """A liveness ping to a unit, on `fleet.ping.<unit>`; it carries nothing."""


class PingReply(msgspec.Struct, frozen=True, kw_only=True):
    """A unit's answer to a ping."""

    unit: str
    pool: str
    pid: int
    uptime_s: float
    draining: bool = False


class DeadLetter(Message, frozen=True, kw_only=True):
    """A message that could not be decoded or handled, on `fleet.dead.<subject>`."""

    subject: str
    reason: Text
    service: str
    size: int
    preview: Annotated[str, Meta(max_length=1024)] = ""
    """The first bytes of the payload, with undecodable bytes replaced."""


__all__ = [
    "BILLED_STATES",
    "TERMINAL_STATES",
    "Alert",
    "AuditRecord",
    "DeadLetter",
    "PingReply",
    "PingRequest",
    "Severity",
    "UnitEvent",
    "UnitState",
]
