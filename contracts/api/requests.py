"""Requests of the `fleet.api.<op>` operations, with their limits in the types.

The brain, the MCP server, the CLI and outside systems send these; the owning
service decodes them, so a value outside a limit is a 400 before any handler
runs. The tool schemas of the brain and the MCP server are generated from
these types, so a limit changed here changes everywhere at once.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from contracts.base import Text, Token, Usd
from contracts.commands import MAX_COUNT
from contracts.events import Severity, UnitState
from contracts.jobs import MAX_ATTEMPTS, JobId, JobRequirements, JobState, Priority

GpuModel = Annotated[str, Meta(min_length=1, max_length=64, description="GPU model, e.g. H100")]
WaitS = Annotated[float, Meta(ge=0, le=120, description="seconds to wait for the verdict")]
UnitCountArg = Annotated[int, Meta(ge=1, le=MAX_COUNT, description="units")]
DurationS = Annotated[
    float,
    Meta(gt=0, le=30 * 86400, description="seconds to keep the units; omitted: until released"),
]


class NoArgs(msgspec.Struct, frozen=True, kw_only=True):
    """An operation without arguments (`budget`, `scaling`); send `{}`."""


class PoolQuery(msgspec.Struct, frozen=True, kw_only=True):
    """`stats`, `report`, `pools`: every pool, or one."""

    pool: Token | None = None


class HealthQuery(msgspec.Struct, frozen=True, kw_only=True):
    """`health`."""

    wait_s: Annotated[float, Meta(ge=0.05, le=10)] = 0.5
    """How long to collect `$SRV.PING` answers, seconds."""


class UnitsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """`units.list`: filters, every one optional."""

    pool: Token | None = None
    provider: Token | None = None
    state: UnitState | None = None


class ProvisionCall(msgspec.Struct, frozen=True, kw_only=True):
    """`provision`: ask for units; answered with the cost-guard's verdict."""

    pool: Token
    gpu_model: GpuModel = "any"
    count: UnitCountArg = 1
    provider: Token | None = None
    max_usd_per_hour: Usd | None = None
    """Ceiling on one unit's price, USD/hour."""
    reason: Text = ""
    requester: Token = "api"
    wait_s: WaitS = 10.0
    """How long to wait for the verdict before answering `pending`, seconds."""
    duration: DurationS | None = None
    """The units are explicit capacity: kept this many seconds, or until released."""


class ReleaseCall(msgspec.Struct, frozen=True, kw_only=True):
    """`release`: remove one unit, or `count` of a pool's idlest; one of them is required."""

    pool: Token
    unit: Token | None = None
    count: UnitCountArg | None = None
    reason: Text = ""
    requester: Token = "api"
    wait_s: WaitS = 10.0

    def __post_init__(self) -> None:
        # Destructive: nothing is released unless the caller said which or how many.
        if self.unit is None and self.count is None:
            raise ValueError("name a `unit` or a `count` of units to release")


class CleanupIdleCall(msgspec.Struct, frozen=True, kw_only=True):
    """`cleanup_idle`: release ready units idle for at least `idle_s` (required: it is
    destructive, so the threshold is never assumed)."""

    idle_s: Annotated[float, Meta(ge=0, le=30 * 86400, description="idle threshold, seconds")]
    pool: Token | None = None
    dry_run: bool = False
    requester: Token = "api"


class SubmitJobCall(msgspec.Struct, frozen=True, kw_only=True):
    """`jobs.submit`: one job; routed to the cheapest pool that meets its requirements."""

    requirements: JobRequirements = msgspec.field(default_factory=JobRequirements)
    pool: Token | None = None
    """Run on this pool (its GPU must still meet the requirements)."""
    priority: Priority = "normal"
    est_s: Annotated[float, Meta(ge=0, le=7 * 86400, description="seconds on an H100")] = 1.0
    max_usd: Usd | None = None
    """Refuse pools where the estimated cost passes this, USD."""
    deadline_s: Annotated[float, Meta(gt=0, le=30 * 86400)] | None = None
    """Seconds from now after which the job is no longer worth starting."""
    command: list[Annotated[str, Meta(max_length=4096)]] | None = None
    """Argv a local unit runs; sim units simulate `est_s` instead."""
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    attempts: Annotated[int, Meta(ge=1, le=MAX_ATTEMPTS)] = 3
    id: JobId | None = None
    """Idempotency: submitting the same id twice queues it once."""
    requester: Token = "api"


class JobQuery(msgspec.Struct, frozen=True, kw_only=True):
    """`jobs.get`: one job with its events."""

    id: JobId


class JobsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """`jobs.list`: the latest jobs, newest first."""

    pool: Token | None = None
    state: JobState | None = None
    limit: Annotated[int, Meta(ge=1, le=1000)] = 50


class CancelJobCall(msgspec.Struct, frozen=True, kw_only=True):
    """`jobs.cancel`: stop a queued or running job."""

    id: JobId
    reason: Text = ""
    requester: Token = "api"


# -- the GPU-agent guide's tools: its argument names, as operations -------------------


class GpuProvisionCall(msgspec.Struct, frozen=True, kw_only=True):
    """`gpu.provision` (the guide's provision_gpu): units of a GPU model, kept for
    `duration` seconds or until released; the pool is the one configured for the model,
    or an ad-hoc pool for it."""

    gpu_model: GpuModel
    provider: Token | None = None
    duration: DurationS | None = None
    count: UnitCountArg = 1
    max_usd_per_hour: Usd | None = None
    """Ceiling on one unit's price, USD/hour."""
    reason: Text = ""
    requester: Token = "api"
    wait_s: WaitS = 10.0


class GpuDestroyCall(msgspec.Struct, frozen=True, kw_only=True):
    """`gpu.destroy` (the guide's destroy_gpu_instance): one instance by the provider's
    own id (our unit name is accepted too), released through the cost-guard."""

    provider: Token
    instance_id: Annotated[
        str, Meta(min_length=1, max_length=128, description="the provider's instance id")
    ]
    reason: Text = ""
    requester: Token = "api"
    wait_s: WaitS = 10.0


class GpuCleanupCall(msgspec.Struct, frozen=True, kw_only=True):
    """`gpu.cleanup_idle` (the guide's cleanup_idle_gpus): release ready units idle for
    at least `idle_threshold_minutes` (30 by default, as the guide documents)."""

    idle_threshold_minutes: Annotated[
        float, Meta(ge=0, le=30 * 1440, description="minutes of idle time before cleanup")
    ] = 30.0
    dry_run: bool = False
    requester: Token = "api"


class AlertCall(msgspec.Struct, frozen=True, kw_only=True):
    """`alert`: tell the operators, on `fleet.alert.<severity>`."""

    message: Annotated[str, Meta(min_length=1, max_length=2000)]
    severity: Severity = "warning"
    kind: Token = "agent"
    pool: Token | None = None
    unit: Token | None = None
    requester: Token = "api"


class FollowupCall(msgspec.Struct, frozen=True, kw_only=True):
    """`followup.schedule`: a check the brain runs later, stored durably."""

    check: Annotated[
        str, Meta(min_length=1, max_length=2000, description="what to check, in words")
    ]
    after_minutes: Annotated[float, Meta(gt=0, le=7 * 1440, description="minutes from now")]
    requester: Token = "api"


# -- hosted agents as a runtime resource ---------------------------------------------

AgentName = Annotated[
    str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="agent name: a-z, 0-9, _ -")
]


class AgentCreateCall(msgspec.Struct, frozen=True, kw_only=True):
    """`agents.create`: a hosted agent served as A2A agent `agents.<name>` by the runners."""

    name: AgentName
    user: Token
    """Whose agent it is; each user may have `[gateway] agents_per_user` (50) agents."""
    system_prompt: Annotated[str, Meta(min_length=1, max_length=32_000)]
    model: Annotated[
        str,
        Meta(
            pattern=r"^(sim|claude-[a-z0-9][a-z0-9.-]*)$",
            max_length=64,
            description="sim, or a Claude model id (claude-...)",
        ),
    ] = "sim"
    """`sim` (the simulated model) or a Claude model id (e.g. claude-sonnet-4-5): the
    models a runner serves; any other name is refused here, not left to a runner."""
    tools: list[Annotated[str, Meta(max_length=64)]] = msgspec.field(default_factory=list)
    """The fleet tools (MCP names) it may use; an unknown name is refused."""
    cores: Annotated[int, Meta(ge=1, le=64, description="vCPUs per runner")] = 1
    memory_mb: Annotated[int, Meta(ge=128, le=262_144, description="MiB per runner")] = 512
    requester: Token = "api"


class AgentDeleteCall(msgspec.Struct, frozen=True, kw_only=True):
    """`agents.delete`: remove an agent; only its user may."""

    name: AgentName
    user: Token
    requester: Token = "api"


class AgentsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """`agents.list`: every agent, or one user's."""

    user: Token | None = None


__all__ = [
    "AgentCreateCall",
    "AgentDeleteCall",
    "AgentsQuery",
    "AlertCall",
    "CancelJobCall",
    "CleanupIdleCall",
    "FollowupCall",
    "GpuCleanupCall",
    "GpuDestroyCall",
    "GpuProvisionCall",
    "HealthQuery",
    "JobQuery",
    "JobsQuery",
    "NoArgs",
    "PoolQuery",
    "ProvisionCall",
    "ReleaseCall",
    "SubmitJobCall",
    "UnitsQuery",
]
