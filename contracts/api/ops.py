"""Every `fleet.api.<op>` operation, defined once: subject, request, reply, owner,
description, and whether it is destructive or costs money.

The owners serve these, the gateway composes them, the brain's and the MCP
server's tool schemas and the AsyncAPI document are generated from them. A
new operation is a row here; its tool names, if any, go in `contracts.api.tools`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.api.replies import (
    AgentsReply,
    AlertReply,
    BudgetReply,
    CancelReply,
    CleanupReply,
    CommandAnswer,
    FollowupsReply,
    HealthReply,
    JobsReply,
    JobView,
    OffersReply,
    PoolsReply,
    QueueReply,
    ReportReply,
    ScalingReply,
    StatsReply,
    SubmitReply,
    UnitsReply,
)
from contracts.api.report import FleetReport, FleetReportQuery
from contracts.api.requests import (
    AgentCreateCall,
    AgentDeleteCall,
    AgentsQuery,
    AlertCall,
    CancelJobCall,
    CleanupIdleCall,
    FollowupCall,
    GpuCleanupCall,
    GpuDestroyCall,
    GpuProvisionCall,
    HealthQuery,
    JobQuery,
    JobsQuery,
    NoArgs,
    PoolQuery,
    ProvisionCall,
    ReleaseCall,
    SubmitJobCall,
    UnitsQuery,
)
from contracts.batch import (
    BatchesReply,
    BatchPlan,
    BatchQuery,
    BatchRunReply,
    PlanBatchCall,
    RunBatchCall,
)
from contracts.offers import OfferFilter, Placement
from contracts.subjects import api as api_subject


class Op(msgspec.Struct, frozen=True, kw_only=True):
    """One request/reply operation on `fleet.api.<name>`."""

    name: str
    """Dotted operation name (`units.list`); the subject is `fleet.api.<name>`."""
    request: Any
    """The request Struct; an empty body is refused, send `{}` for no arguments."""
    reply: Any
    """The answer's Struct (or `ApiError`)."""
    owner: str
    """The service that serves it."""
    description: str
    """One line; also the tool description the brain and MCP clients read."""
    destructive: bool = False
    """Removes units: requires explicit arguments, never defaults."""
    costs_money: bool = False
    """Adds spend: judged by the cost-guard before anything runs."""
    writes: bool = False
    """Changes what others see (an alert sent, a follow-up stored, an agent made) without
    adding spend or removing units. Only an operation with none of these three marks is
    read-only (MCP's `readOnlyHint`, which a host may run without asking)."""
    fails_unless_ok: bool = False
    """An answer with `ok: false` is a failure (a tool result with isError), not data."""

    @property
    def read_only(self) -> bool:
        """Whether calling it changes nothing: no spend, no removal, no state others see."""
        return not (self.destructive or self.costs_money or self.writes)

    @property
    def subject(self) -> str:
        return api_subject(self.name)


OPS: tuple[Op, ...] = (
    Op(
        name="units.list",
        request=UnitsQuery,
        reply=UnitsReply,
        owner="provisioner",
        description="List GPU units (instances), filtered by pool, provider or state.",
    ),
    Op(
        name="gpus.available",
        request=OfferFilter,
        reply=OffersReply,
        owner="provisioner",
        description="Live GPU offers across providers, cheapest first, filtered by model, "
        "VRAM, vendor, tier or price.",
    ),
    Op(
        name="place",
        request=OfferFilter,
        reply=Placement,
        owner="provisioner",
        description="Where a workload needing `min_vram_gb` GB of VRAM per card should run, "
        "with alternatives and the reasoning.",
    ),
    Op(
        name="pools",
        request=PoolQuery,
        reply=PoolsReply,
        owner="watcher",
        description="The watcher's latest metrics per pool, with unit counts.",
    ),
    Op(
        name="scaling",
        request=NoArgs,
        reply=ScalingReply,
        owner="scaler",
        description="Per pool, the unit count the scaler wants, its mode and lead time.",
    ),
    Op(
        name="budget",
        request=NoArgs,
        reply=BudgetReply,
        owner="costguard",
        description="Today's spend, budget, burn rate and the requests held for a person.",
    ),
    Op(
        name="stats",
        request=PoolQuery,
        reply=StatsReply,
        owner="gateway",
        description="Per-pool ready/pending units, utilization, in-flight, queue and USD/hour; "
        "today's spend and budget.",
    ),
    Op(
        name="health",
        request=HealthQuery,
        reply=HealthReply,
        owner="gateway",
        description="Which services answer, open circuit breakers and stream lag; a "
        "failure when any is missing or lagging.",
        fails_unless_ok=True,
    ),
    Op(
        name="report",
        request=PoolQuery,
        reply=ReportReply,
        owner="gateway",
        description="A short readable report of stats and health.",
    ),
    Op(
        name="provision",
        request=ProvisionCall,
        reply=CommandAnswer,
        owner="gateway",
        description="Ask for new GPU units in a pool; answered with the cost-guard's verdict "
        "(approved, denied, held for a person, or pending).",
        costs_money=True,
    ),
    Op(
        name="release",
        request=ReleaseCall,
        reply=CommandAnswer,
        owner="gateway",
        description="Release one unit, or `count` of a pool's idlest units, through the "
        "cost-guard.",
        destructive=True,
    ),
    Op(
        name="cleanup_idle",
        request=CleanupIdleCall,
        reply=CleanupReply,
        owner="gateway",
        description="Release ready units idle for at least `idle_s` seconds (1800 is 30 "
        "minutes), through the cost-guard; `dry_run` only lists them.",
        destructive=True,
    ),
    Op(
        name="jobs.submit",
        request=SubmitJobCall,
        reply=SubmitReply,
        owner="gateway",
        description="Submit GPU work: routed to the cheapest pool whose GPU meets the "
        "requirements (min_vram_gb, gpu_models, vendor, runtime) within budget; low-priority "
        "work waits when the budget binds; answered routed, queued or refused with the reason.",
        costs_money=True,
    ),
    Op(
        name="jobs.queue",
        request=PoolQuery,
        reply=QueueReply,
        owner="gateway",
        description="Per pool, jobs queued per priority, jobs running and the oldest "
        "job's age; jobs waiting for budget.",
    ),
    Op(
        name="jobs.list",
        request=JobsQuery,
        reply=JobsReply,
        owner="gateway",
        description="The latest jobs with their state, newest first, by pool or state.",
    ),
    Op(
        name="jobs.get",
        request=JobQuery,
        reply=JobView,
        owner="gateway",
        description="One job: its state and every event (routing, attempts, output, outcome).",
    ),
    Op(
        name="jobs.cancel",
        request=CancelJobCall,
        reply=CancelReply,
        owner="gateway",
        description="Cancel a queued or running job by id; the unit running it stops it.",
        destructive=True,
    ),
)

GUIDE_OPS: tuple[Op, ...] = (
    Op(
        name="gpu.provision",
        request=GpuProvisionCall,
        reply=CommandAnswer,
        owner="gateway",
        description="Provision `count` GPU units of a model (H100, A100, ...), optionally from "
        "one provider, kept for `duration` seconds or until released: the scaler will not "
        "remove them for lack of load. A model no pool runs gets an ad-hoc pool. Answered "
        "with the cost-guard's verdict.",
        costs_money=True,
    ),
    Op(
        name="gpu.destroy",
        request=GpuDestroyCall,
        reply=CommandAnswer,
        owner="gateway",
        description="Destroy one GPU instance by its provider and the provider's instance id "
        "(as list_gpu_instances shows it), through the cost-guard.",
        destructive=True,
    ),
    Op(
        name="gpu.cleanup_idle",
        request=GpuCleanupCall,
        reply=CleanupReply,
        owner="gateway",
        description="Find and release ready GPU units idle for at least "
        "`idle_threshold_minutes` (default 30), through the cost-guard; `dry_run` only lists.",
        destructive=True,
    ),
    Op(
        name="alert",
        request=AlertCall,
        reply=AlertReply,
        owner="gateway",
        description="Send an alert to the operators on fleet.alert.<severity> (info, warning, "
        "critical), naming the pool or unit it is about.",
        writes=True,
    ),
    Op(
        name="followup.schedule",
        request=FollowupCall,
        reply=FollowupsReply,
        owner="brain",
        description="Schedule a follow-up check the fleet agent runs by itself after "
        "`after_minutes` (e.g. 'is the batch on schedule?'); stored durably.",
        writes=True,
    ),
    Op(
        name="followup.list",
        request=NoArgs,
        reply=FollowupsReply,
        owner="brain",
        description="The follow-up checks scheduled and not yet run.",
    ),
)
"""The GPU-agent guide's operations, with its argument names (provision_gpu, ...)."""

AGENT_OPS: tuple[Op, ...] = (
    Op(
        name="agents.create",
        request=AgentCreateCall,
        reply=AgentsReply,
        owner="gateway",
        description="Create a hosted agent (A2A agent `agents.<name>`) for a user, with its "
        "own system prompt, model, fleet tools and runner resources (cores, memory_mb); "
        "counts against the user's agent quota.",
        writes=True,
        costs_money=True,
    ),
    Op(
        name="agents.list",
        request=AgentsQuery,
        reply=AgentsReply,
        owner="gateway",
        description="The hosted agents, every user's or one user's, with the quota.",
    ),
    Op(
        name="agents.delete",
        request=AgentDeleteCall,
        reply=AgentsReply,
        owner="gateway",
        description="Delete a hosted agent of a user: the runners stop serving it.",
        destructive=True,
    ),
)
"""Hosted agents as a runtime resource (the platform guide's spawn and delete)."""

BATCH_OPS: tuple[Op, ...] = (
    Op(
        name="batch.plan",
        request=PlanBatchCall,
        reply=BatchPlan,
        owner="gateway",
        description="Plan a batch of `items` items taking `per_item_s` seconds each on "
        "`ref_gpu`: per allowed GPU model and count, the wall time (provisioning included) "
        "and cost from live offers; picks the cheapest that meets `deadline_s` and "
        "`max_usd`, or says plainly that none does and what would (a larger cap, a later "
        "deadline). Rents nothing.",
    ),
    Op(
        name="batch.run",
        request=RunBatchCall,
        reply=BatchRunReply,
        owner="gateway",
        description="Plan a batch (or take `option`) and carry it out: the GPUs provisioned "
        "through the cost-guard and kept for the batch, the items split into jobs with "
        "retries, progress on fleet.batch.<id> every `progress_every_s`, every unit released "
        "at the end, and a summary of actual against planned time and cost.",
        costs_money=True,
    ),
    Op(
        name="batch.status",
        request=BatchQuery,
        reply=BatchesReply,
        owner="gateway",
        description="A batch run's progress (items done, units, spend so far) by `id`, or the "
        "latest runs.",
    ),
)
"""Batches of GPU work under a cost cap and a deadline (contracts.batch)."""


HISTORY_OPS: tuple[Op, ...] = (
    Op(
        name="fleet_report",
        request=FleetReportQuery,
        reply=FleetReport,
        owner="gateway",
        description="What the fleet did over the last `days` days (7 by default) and what "
        "it cost: load by hour of day and day of week, spend by GPU type, provider and "
        "pool, idle unit-hours, job duration and cost per GPU type, budget denials and "
        "holds, failures and replacements, and recommendations, each with its numbers and "
        "expected saving.",
    ),
)
"""History: the report over days (issue 17)."""

OPS = OPS + GUIDE_OPS + AGENT_OPS + BATCH_OPS + HISTORY_OPS

BY_NAME: dict[str, Op] = {op.name: op for op in OPS}


def op(name: str) -> Op:
    """The operation called `name`; KeyError names the known ones."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no fleet.api operation {name!r}; known: {', '.join(BY_NAME)}") from None
