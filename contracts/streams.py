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
    retention: Literal["limits", "workqueue"] = "limits"
    """`workqueue` only for the job queues: a job is removed once a unit acks it."""


HISTORY_DAYS = 8.0
"""Default days the history streams keep (`[retention] days`): a 7-day report (`fleet
report --days 7`) needs the whole of the week plus the day it is read on."""

FLEET_METRICS = StreamSpec(
    name="FLEET_METRICS",
    subjects=("fleet.metrics.>",),
    description="Per-pool metrics every tick; the scaler's input and replayable history.",
    max_age_s=HISTORY_DAYS * DAY_S,
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
    max_age_s=HISTORY_DAYS * DAY_S,
)
FLEET_EVENTS = StreamSpec(
    name="FLEET_EVENTS",
    subjects=("fleet.unit.>", "fleet.alert.>"),
    description="Unit lifecycle events and alerts; the ledger is rebuilt from them.",
    max_age_s=HISTORY_DAYS * DAY_S,
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

JOBS_STREAMS: dict[str, StreamSpec] = {
    prio: StreamSpec(
        name=f"JOBS_{prio.upper()}",
        subjects=(f"fleet.jobs.{prio}.*",),
        description=f"Work queue of {prio}-priority jobs, one subject per pool; a job "
        "leaves it when a unit acks it (finished, dead-lettered or cancelled).",
        max_age_s=7 * DAY_S,
        retention="workqueue",
    )
    for prio in ("high", "normal", "low")
}
"""One work-queue stream per priority, so a unit can take high before normal before low."""
JOBS_HELD = StreamSpec(
    name="JOBS_HELD",
    subjects=("fleet.jobheld.*",),
    description="Jobs waiting for budget (`fleet.jobheld.<priority>`); the gateway routes "
    "them when the budget allows.",
    max_age_s=7 * DAY_S,
    retention="workqueue",
)
FLEET_JOBEVENTS = StreamSpec(
    name="FLEET_JOBEVENTS",
    subjects=("fleet.job.>",),
    description="Every job's events: queued, routed, started, progress and the outcome.",
    max_age_s=HISTORY_DAYS * DAY_S,
)
ROLLUP_DAYS = 35.0
"""Default days the per-minute rollup keeps (`[retention] rollup_days`): a month of
minutes is small (one message per pool per minute) and covers month-long reports."""
FLEET_ROLLUP = StreamSpec(
    name="FLEET_ROLLUP",
    subjects=("fleet.rollup.>",),
    description="Per-pool per-minute aggregates of the metrics (the watcher's rollup): the "
    "history reports and what-if replays read, small enough to keep a month.",
    max_age_s=ROLLUP_DAYS * DAY_S,
    duplicate_window_s=120.0,
)
FLEET_BATCHES = StreamSpec(
    name="FLEET_BATCHES",
    subjects=("fleet.batch.>",),
    description="Every batch run's steps, progress and summary (`fleet.batch.<id>`).",
    max_age_s=8 * DAY_S,
)

ALL_STREAMS: tuple[StreamSpec, ...] = (
    FLEET_METRICS,
    FLEET_CMDS,
    FLEET_EVENTS,
    FLEET_AUDIT,
    FLEET_DEAD,
    A2A_TASKS,
    *JOBS_STREAMS.values(),
    JOBS_HELD,
    FLEET_JOBEVENTS,
    FLEET_BATCHES,
    FLEET_ROLLUP,
)

HISTORY_STREAMS: frozenset[str] = frozenset(
    {"FLEET_METRICS", "FLEET_CMDS", "FLEET_EVENTS", "FLEET_AUDIT", "FLEET_JOBEVENTS"}
)
"""The streams a history report reads (metrics, verdicts, unit events, audit, jobs), kept
`[retention] days`; the audit keeps its own longer age when that is longer."""


def retained(
    specs: tuple[StreamSpec, ...],
    days: float,
    rollup_days: float,
    metrics_days: float | None = None,
) -> tuple[StreamSpec, ...]:
    """`specs` with the history streams kept `days` (never less than the contract's own
    age for the audit, which outlives reports), the per-second metrics `metrics_days`
    when given (they are most of the disk; the rollup keeps their minutes), and the
    rollup kept `rollup_days`."""
    out = []
    for spec in specs:
        if spec.name in HISTORY_STREAMS:
            age = days * DAY_S
            if spec.name == FLEET_METRICS.name and metrics_days is not None:
                age = metrics_days * DAY_S
            if spec.name == FLEET_AUDIT.name:
                age = max(age, FLEET_AUDIT.max_age_s)
            spec = msgspec.structs.replace(spec, max_age_s=age)
        elif spec.name == FLEET_ROLLUP.name:
            spec = msgspec.structs.replace(spec, max_age_s=rollup_days * DAY_S)
        out.append(spec)
    return tuple(out)


def stream_for(subject: str) -> StreamSpec | None:
    """The stream that captures `subject`, or None for core-NATS-only subjects."""
    for spec in ALL_STREAMS:
        if any(covers(pattern, subject) for pattern in spec.subjects):
            return spec
    return None
