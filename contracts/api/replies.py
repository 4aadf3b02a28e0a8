"""Replies of the `fleet.api.<op>` operations.

Owners answer with JSON of these shapes (or with `ApiError`); callers may
decode the answers with these types. Unknown fields are ignored on decode, so
an owner may add a field without breaking anyone; removing or retyping one is
a contract change, and the live-stack test that decodes every answer fails.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from contracts.commands import VerdictKind
from contracts.events import UnitState
from contracts.jobs import Job, JobEvent
from contracts.offers import Offer
from contracts.telemetry import PoolMetrics


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    code: int
    """HTTP-like: 400 bad request, 404 unknown, 429 rate limited, 500 failed, 503 absent."""
    message: str


class ApiError(msgspec.Struct, frozen=True, kw_only=True):
    """Any operation's answer when it did not run; NATS micro error headers say the same."""

    error: ErrorBody


class UnitRow(msgspec.Struct, frozen=True, kw_only=True):
    """One unit as the provisioner tracks it, with its last reported load."""

    unit: str
    pool: str
    provider: str
    state: UnitState
    gpu_model: str = ""
    usd_per_hour: float = 0.0
    address: str | None = None
    created_ts: float = 0.0
    updated_ts: float = 0.0
    reason: str = ""
    release_requested_ts: float | None = None
    inflight: float | None = None
    idle_s: float | None = None
    provider_unit_id: str = ""
    """The provider's own id for it (what destroy_gpu_instance takes)."""
    command_id: str | None = None
    """The provision command it was created for."""
    pinned: bool = False
    """Explicit capacity: idle cleanup and scale-in leave it until `pinned_until`."""
    pinned_until: float | None = None
    """When its pin ends, unix seconds; None while pinned: until released."""


class UnitsReply(msgspec.Struct, frozen=True, kw_only=True):
    """`units.list`."""

    units: list[UnitRow]
    count: int


class OffersReply(msgspec.Struct, frozen=True, kw_only=True):
    """`gpus.available`: matching offers, cheapest first, and each provider's status."""

    offers: list[Offer]
    providers: dict[str, str] = msgspec.field(default_factory=dict)
    """Provider -> status (`ok`, `unavailable: no key`, ...), when known."""


class HeldRequest(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    pool: str
    units: int
    usd_per_hour: float
    requester: str
    expires_in_s: float


class BudgetReply(msgspec.Struct, frozen=True, kw_only=True):
    """`budget`: the day's figures and the requests waiting for a person."""

    daily_usd: float
    hard_cap_usd: float
    max_burn_usd_per_hour: float | None = None
    approval_threshold_usd_per_hour: float | None = None
    spent_today_usd: float
    burn_usd_per_hour: float
    reserved_usd_per_hour: float
    projected_today_usd: float
    hours_left: float
    held: list[HeldRequest]


class UnitCounts(msgspec.Struct, frozen=True, kw_only=True):
    known: int
    ended: int


class PoolEntry(msgspec.Struct, frozen=True, kw_only=True):
    metrics: PoolMetrics
    units: UnitCounts


class PoolsReply(msgspec.Struct, frozen=True, kw_only=True):
    """`pools`: the watcher's latest metrics per pool."""

    pools: list[PoolEntry]
    tick_s: float


class PoolScaling(msgspec.Struct, frozen=True, kw_only=True):
    desired: int | None
    """max(load_desired, pinned): what the pool is kept at."""
    panic: bool
    lead_time_s: float
    min: int
    max: int
    last_metrics_ts: float | None
    load_desired: int | None = None
    """What the load alone calls for."""
    pinned: int = 0
    """Units explicit provisions keep, whatever the load (their floor)."""
    pins: list[dict[str, Any]] = msgspec.field(default_factory=list)
    """The pins behind `pinned`: id, count, until_ts (None: until released)."""


class ScalingReply(msgspec.Struct, frozen=True, kw_only=True):
    """`scaling`: per pool, the count the scaler wants."""

    pools: dict[str, PoolScaling]


class PoolStats(msgspec.Struct, frozen=True, kw_only=True):
    ready: int
    pending: int
    utilization: float
    inflight: float
    queue: float
    arrival_rate: float
    usd_per_hour: float
    metrics: str | None = None
    """`none yet` when the pool has units but the watcher has not reported it."""


class StatsReply(msgspec.Struct, frozen=True, kw_only=True):
    """`stats`: per pool figures, today's budget, and which owners did not answer."""

    pools: dict[str, PoolStats]
    budget: dict[str, float]
    incomplete: list[str]
    ts: float


class ConsumerLag(msgspec.Struct, frozen=True, kw_only=True):
    stream: str
    consumer: str
    pending: int
    unacked: int


class HealthReply(msgspec.Struct, frozen=True, kw_only=True):
    """`health`: which services answer `$SRV.PING`, breakers, consumer lag, problems."""

    ok: bool
    services: list[str]
    missing: list[str]
    breakers: dict[str, Any]
    stream_lag: list[ConsumerLag]
    problems: list[str]


class ReportReply(msgspec.Struct, frozen=True, kw_only=True):
    """`report`: stats and health, with a few readable lines."""

    text: str
    stats: StatsReply
    health: HealthReply


class CommandAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """`provision` / `release`: the cost-guard's verdict, or `pending` when none came in time."""

    id: str
    decision: VerdictKind | Literal["pending"]
    reason: str
    request: dict[str, Any]
    """The command as published on FLEET_CMDS."""
    usd_per_hour: float = 0.0
    spent_today_usd: float = 0.0
    budget_usd: float = 0.0
    projected_today_usd: float = 0.0


class IdleUnit(msgspec.Struct, frozen=True, kw_only=True):
    unit: str
    pool: str
    idle_s: float
    usd_per_hour: float


class CleanupReply(msgspec.Struct, frozen=True, kw_only=True):
    """`cleanup_idle`: the idle units found and the verdict on each release."""

    idle: list[IdleUnit]
    released: list[CommandAnswer]
    dry_run: bool
    saved_usd_per_hour: float = 0.0


class SubmitReply(msgspec.Struct, frozen=True, kw_only=True):
    """`jobs.submit`: where the job went, or why it waits or was refused."""

    id: str
    decision: Literal["routed", "queued", "refused"]
    """`queued`: waiting for budget; it is routed when the budget allows."""
    reason: str
    pool: str | None = None
    est_usd: float | None = None


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    """`jobs.get`: the job, its latest state and every event."""

    id: str
    state: str
    pool: str | None
    job: Job | None
    events: list[JobEvent]


class JobsReply(msgspec.Struct, frozen=True, kw_only=True):
    """`jobs.list`: the latest state of each job, newest first."""

    jobs: list[JobEvent]
    count: int


class CancelReply(msgspec.Struct, frozen=True, kw_only=True):
    """`jobs.cancel`."""

    id: str
    cancelled: bool
    reason: str


class PoolQueue(msgspec.Struct, frozen=True, kw_only=True):
    """One pool's work queue: jobs waiting per priority and jobs being run."""

    queued: dict[str, int]
    running: int
    oldest_job_age_s: float = 0.0


class QueueReply(msgspec.Struct, frozen=True, kw_only=True):
    """`jobs.queue` (the queue_status tool): per pool, and jobs held for budget."""

    pools: dict[str, PoolQueue]
    held: dict[str, int]


__all__ = [
    "AgentRunner",
    "AgentSpec",
    "AgentsReply",
    "AlertReply",
    "ApiError",
    "BudgetReply",
    "CancelReply",
    "CleanupReply",
    "CommandAnswer",
    "ConsumerLag",
    "ErrorBody",
    "Followup",
    "FollowupsReply",
    "HealthReply",
    "HeldRequest",
    "IdleUnit",
    "JobView",
    "JobsReply",
    "OffersReply",
    "PoolEntry",
    "PoolQueue",
    "PoolScaling",
    "PoolStats",
    "PoolsReply",
    "QueueReply",
    "ReportReply",
    "ScalingReply",
    "StatsReply",
    "SubmitReply",
    "UnitCounts",
    "UnitRow",
    "UnitsReply",
]


class AlertReply(msgspec.Struct, frozen=True, kw_only=True):
    """`alert`: where it went."""

    subject: str
    id: str


class Followup(msgspec.Struct, frozen=True, kw_only=True):
    """A check the brain runs at `due_ts`, as a task of its own."""

    id: str
    check: str
    due_ts: float
    requester: str = "api"
    created_ts: float = 0.0


class FollowupsReply(msgspec.Struct, frozen=True, kw_only=True):
    """`followup.schedule` (the one stored) and `followup.list` (every one waiting)."""

    followups: list[Followup]


class AgentSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A hosted agent as stored in the `fleet_agents` bucket and served by the runners."""

    name: str
    user: str
    system_prompt: str
    model: str = "sim"
    tools: list[str] = msgspec.field(default_factory=list)
    cores: int = 1
    memory_mb: int = 512
    created_ts: float = 0.0
    runtime: str = ""
    """Where its runners run: empty, on the shared runners (each serves every such agent);
    a provider name (`hypercore`, `local`), on a runner unit of its own in pool
    `agents-<name>`, of its cores and memory, that serves only it."""

    @property
    def agent(self) -> str:
        """Its A2A agent name."""
        return f"agents.{self.name}"


class AgentRunner(msgspec.Struct, frozen=True, kw_only=True):
    """An agent's own runner unit as `agents.create` left it (`[gateway] agent_runtime`)."""

    pool: str
    unit: str = ""
    provider: str
    state: str
    """`ready`; `booting` or `requested` when the create stopped waiting first; `pending`
    when the cost-guard holds it for a person (`fleet approve ID`)."""
    cores: int
    memory_mb: int
    usd_per_hour: float = 0.0
    reason: str = ""


class AgentsReply(msgspec.Struct, frozen=True, kw_only=True):
    """`agents.create` / `agents.delete` (the one agent) and `agents.list`."""

    agents: list[AgentSpec]
    quota: int = 0
    """The user's agent quota (create and list for one user)."""
    used: int | None = 0
    """The user's agents, this one included; null in a listing of every user's."""
    runner: AgentRunner | None = None
    """`agents.create` of an agent with runner units of its own: its runner."""
