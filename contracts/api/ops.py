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
    BudgetReply,
    CancelReply,
    CleanupReply,
    CommandAnswer,
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
from contracts.api.requests import (
    CancelJobCall,
    CleanupIdleCall,
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
        description="Which services answer, open circuit breakers and stream lag.",
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

BY_NAME: dict[str, Op] = {op.name: op for op in OPS}


def op(name: str) -> Op:
    """The operation called `name`; KeyError names the known ones."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no fleet.api operation {name!r}; known: {', '.join(BY_NAME)}") from None
