"""GPU work: jobs, their events, and the records kept for each.

A `Job` is routed to one pool and published on `fleet.jobs.<priority>.<pool>`,
a work-queue stream per priority (units take high before normal before low).
Everything that happens to it is a `JobEvent` on `fleet.job.<id>`. The
outcome event is published once per job id (de-duplicated as `<id>:<state>`)
and a redelivered job's events are read before it runs again, which is what
makes completion idempotent when a job is delivered twice.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from contracts.base import Message, Text, Token, Usd

Priority = Literal["high", "normal", "low"]
PRIORITIES: tuple[Priority, ...] = ("high", "normal", "low")
"""In the order units take them."""

JobState = Literal[
    "queued",
    "routed",
    "started",
    "progress",
    "succeeded",
    "failed",
    "retried",
    "dead",
    "cancelled",
    "refused",
]
TERMINAL_JOB_STATES: frozenset[str] = frozenset({"succeeded", "dead", "cancelled", "refused"})
"""States after which nothing more happens to a job."""

JobId = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
"""A job id is one subject token (`fleet.job.<id>`)."""

MAX_ATTEMPTS = 20
MAX_JOB_BYTES = 256 * 1024
"""The most a job may weigh as JSON: it travels whole on its queue and in its events, well
inside NATS's 1 MiB default message limit. Larger inputs belong in object storage, with a
reference in `data`."""
"""Upper bound on a job's `attempts`: beyond it a poison job only burns GPU time."""


class JobRequirements(msgspec.Struct, frozen=True, kw_only=True):
    """What a GPU must offer to run the job; every field optional."""

    min_vram_gb: Annotated[float, Meta(ge=0, le=10_000)] = 0.0
    """VRAM per card, GB."""
    gpu_models: list[Annotated[str, Meta(min_length=1, max_length=64)]] = msgspec.field(
        default_factory=list
    )
    """Acceptable GPU models (`H100`, `A100-80GB`); empty for any."""
    vendor: Annotated[str, Meta(max_length=32)] | None = None
    """`nvidia`, `amd`, ...; None for any."""
    runtime: Annotated[str, Meta(max_length=32)] | None = None
    """`cuda`, `rocm`, `cpu`; None for any."""


class Job(Message, frozen=True, kw_only=True):
    """One piece of GPU work, on `fleet.jobs.<priority>.<pool>`."""

    id: JobId
    requirements: JobRequirements = msgspec.field(default_factory=JobRequirements)
    pool: Token | None = None
    """An explicit pool; requirements are then only checked, not searched."""
    priority: Priority = "normal"
    deadline_ts: float | None = None
    """Unix time after which the job is no longer worth running."""
    max_usd: Usd | None = None
    """The most this job may cost (price of a unit x estimated seconds)."""
    est_s: Annotated[float, Meta(ge=0, le=7 * 86400)] = 1.0
    """Estimated run time on an H100-class GPU, seconds; sim units scale it by their speed."""
    command: list[Annotated[str, Meta(max_length=4096)]] | None = None
    """Argv a local unit runs as a subprocess; None to hand `data` to the unit's handler."""
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    attempts: Annotated[int, Meta(ge=1, le=MAX_ATTEMPTS)] = 3
    """Deliveries before the job is dead-lettered."""
    submitter: Token = "api"


class JobEvent(Message, frozen=True, kw_only=True):
    """A step of a job, on `fleet.job.<id>`; `reason` says why in a sentence."""

    job: JobId
    state: JobState
    reason: Text = ""
    pool: str | None = None
    unit: str | None = None
    priority: Priority = "normal"
    attempt: int = 0
    """The delivery this event belongs to (1 for the first)."""
    progress: Annotated[float, Meta(ge=0, le=1)] | None = None
    exit_code: int | None = None
    output: Annotated[str, Meta(max_length=8192)] = ""
    """The tail of a local job's stdout and stderr."""
    reasons: list[str] = msgspec.field(default_factory=list)
    """On `dead`: every attempt's reason, in order."""
    est_usd: Usd | None = None
    spec: Job | None = None
    """On `routed`, `queued` and `refused`: the job itself, so `jobs get` can show it."""
    queue_seq: int | None = None
    """On `routed` and `queued`: the job's sequence in its stream, so a cancel can
    remove it from the queue."""


class JobCancel(msgspec.Struct, frozen=True, kw_only=True):
    """Broadcast on `fleet.jobctl.cancel` so the unit running `job` stops it."""

    job: JobId
    reason: Text = ""


__all__ = [
    "MAX_ATTEMPTS",
    "MAX_JOB_BYTES",
    "PRIORITIES",
    "TERMINAL_JOB_STATES",
    "Job",
    "JobCancel",
    "JobEvent",
    "JobId",
    "JobRequirements",
    "JobState",
    "Priority",
]
