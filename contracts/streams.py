"""JetStream streams: which subjects each keeps, and for how long.

Retention is `limits` everywhere: several consumers read the same command
stream (the cost-guard reads proposals, the provisioner reads approvals, `fleet
tail` reads everything), so a work-queue stream would hide messages from all
but one of them. Publishers set `Nats-Msg-Id` to the command id; the duplicate
window makes a retried publish land once.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from contracts.subjects import covers

HOUR_S = 3600.0
DAY_S = 24 * HOUR_S


class StreamSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One JetStream stream of the contract."""

    name: str
    subjects: tuple[str, ...]
    description: str
    max_age_s: float
    duplicate_window_s: float = 120.0
    max_msg_size: int = 1024 * 1024
    storage: Literal["file", "memory"] = "file"
    max_msgs_per_subject: int = -1


FLEET_METRICS = StreamSpec(
    name="FLEET_METRICS",
    subjects=("fleet.metrics.>",),
    description="Per-pool metrics every tick; the scaler's input and replayable history.",
    max_age_s=DAY_S,
    duplicate_window_s=10.0,
)
FLEET_CMDS = StreamSpec(
    name="FLEET_CMDS",
    subjects=(
        "fleet.scale.proposed.>",
        "fleet.provision.requested",
        "fleet.release.requested",
        "fleet.budget.approved",
        "fleet.budget.denied",
        "fleet.budget.held",
    ),
    description="Commands that may cost money and the cost-guard's verdicts.",
    max_age_s=7 * DAY_S,
)
FLEET_EVENTS = StreamSpec(
    name="FLEET_EVENTS",
    subjects=("fleet.unit.>", "fleet.alert.>"),
    description="Unit lifecycle events and alerts; the ledger is rebuilt from them.",
    max_age_s=7 * DAY_S,
)
FLEET_AUDIT = StreamSpec(
    name="FLEET_AUDIT",
    subjects=("fleet.audit.>",),
    description="Every decision with its reasoning.",
    max_age_s=30 * DAY_S,
)
FLEET_DEAD = StreamSpec(
    name="FLEET_DEAD",
    subjects=("fleet.dead.>",),
    description="Messages that failed to decode or be handled, with the reason.",
    max_age_s=7 * DAY_S,
)
A2A_TASKS = StreamSpec(
    name="A2A_TASKS",
    subjects=("a2a.*.tasks.*", "a2a.agents.*.tasks.*"),
    description="A2A task status and artifact events, for late subscribers.",
    max_age_s=DAY_S,
    duplicate_window_s=60.0,
)

ALL_STREAMS: tuple[StreamSpec, ...] = (
    FLEET_METRICS,
    FLEET_CMDS,
    FLEET_EVENTS,
    FLEET_AUDIT,
    FLEET_DEAD,
    A2A_TASKS,
)


def stream_for(subject: str) -> StreamSpec | None:
    """The stream that captures `subject`, or None for core-NATS-only subjects."""
    for spec in ALL_STREAMS:
        if any(covers(pattern, subject) for pattern in spec.subjects):
            return spec
    return None
