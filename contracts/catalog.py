"""The channel catalog: one row per subject pattern of the contract.

The JSON Schema and the AsyncAPI document are generated from these rows and
from the Structs they name; nothing in them is written by hand.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from contracts.admin import AgentResources, AgentResourcesReply
from contracts.batch import BatchStatus
from contracts.commands import (
    DecideReply,
    DecideRequest,
    ProvisionRequest,
    ReleaseRequest,
    ScaleProposal,
    Verdict,
)
from contracts.events import Alert, AuditRecord, DeadLetter, PingReply, PingRequest, UnitEvent
from contracts.jobs import Job, JobCancel, JobEvent
from contracts.telemetry import PoolMetrics, PoolMinute, UnitTelemetry

Transport = Literal["core", "stream", "request"]


class Channel(msgspec.Struct, frozen=True, kw_only=True):
    """A subject pattern, what travels on it and how."""

    key: str
    address: str
    """The subject with `{param}` placeholders, as AsyncAPI writes it."""
    payload: Any
    transport: Transport
    description: str
    reply: Any = None
    stream: str | None = None
    publishers: tuple[str, ...] = ()
    subscribers: tuple[str, ...] = ()
    signed_by: str = ""
    """Whose key signs what its readers believe here (contracts.signatures); empty: none."""
    fenced: bool = False
    """True when the signature also covers the signer's fencing token (`Fleet-Fence`)."""


CHANNELS: tuple[Channel, ...] = (
    Channel(
        key="telemetry",
        address="fleet.telemetry.{pool}.{unit}",
        payload=UnitTelemetry,
        transport="core",
        description="Heartbeats from units; high rate, core NATS.",
        publishers=("units", "runner"),
        subscribers=("watcher",),
    ),
    Channel(
        key="metrics",
        address="fleet.metrics.{pool}",
        payload=PoolMetrics,
        transport="stream",
        stream="FLEET_METRICS",
        description="Per-pool metrics every tick.",
        publishers=("watcher",),
        subscribers=("scaler",),
    ),
    Channel(
        key="rollup",
        address="fleet.rollup.{pool}",
        payload=PoolMinute,
        transport="stream",
        stream="FLEET_ROLLUP",
        description="Per-pool per-minute aggregates of the metrics, kept for history reports.",
        publishers=("watcher",),
        subscribers=("gateway", "clients"),
    ),
    Channel(
        key="scaleProposed",
        address="fleet.scale.proposed.{pool}",
        payload=ScaleProposal,
        transport="stream",
        stream="FLEET_CMDS",
        description="The scaler's desired capacity for a pool.",
        publishers=("scaler",),
        subscribers=("costguard",),
    ),
    Channel(
        key="provisionRequested",
        address="fleet.provision.requested",
        payload=ProvisionRequest,
        transport="stream",
        stream="FLEET_CMDS",
        description="A request for new units from an operator, the brain or the API.",
        publishers=("brain", "gateway", "api"),
        subscribers=("costguard",),
    ),
    Channel(
        key="releaseRequested",
        address="fleet.release.requested",
        payload=ReleaseRequest,
        transport="stream",
        stream="FLEET_CMDS",
        description="A request to remove units.",
        publishers=("brain", "gateway", "api", "provisioner"),
        subscribers=("costguard",),
    ),
    Channel(
        key="budgetApproved",
        address="fleet.budget.approved",
        payload=Verdict,
        transport="stream",
        stream="FLEET_CMDS",
        description="Approved commands; only the cost-guard publishes here.",
        publishers=("costguard",),
        subscribers=("provisioner",),
        signed_by="cost-guard",
        fenced=True,
    ),
    Channel(
        key="budgetDenied",
        address="fleet.budget.denied",
        payload=Verdict,
        transport="stream",
        stream="FLEET_CMDS",
        description="Denied commands with the numbers that decided it.",
        publishers=("costguard",),
        signed_by="cost-guard",
        fenced=True,
    ),
    Channel(
        key="budgetHeld",
        address="fleet.budget.held",
        payload=Verdict,
        transport="stream",
        stream="FLEET_CMDS",
        description="Commands above the approval threshold, waiting for a person.",
        publishers=("costguard",),
        signed_by="cost-guard",
        fenced=True,
    ),
    Channel(
        key="budgetDecide",
        address="fleet.budget.decide.{id}",
        payload=DecideRequest,
        reply=DecideReply,
        transport="request",
        description="An operator approves or rejects a held command.",
        publishers=("operator",),
        subscribers=("costguard",),
        signed_by="operator (a key in `[signing] operators`, which names the operator)",
    ),
    Channel(
        key="unit",
        address="fleet.unit.{pool}.{unit}",
        payload=UnitEvent,
        transport="stream",
        stream="FLEET_EVENTS",
        description="Unit lifecycle: requested, booting, ready, draining, terminated, failed. "
        "The watcher's `failed` reports are unsigned; the provisioner confirms each with its own.",
        publishers=("provisioner", "watcher"),
        subscribers=("watcher", "costguard"),
        signed_by="provisioner (the cost-guard's ledger bills from nothing else)",
    ),
    Channel(
        key="alert",
        address="fleet.alert.{severity}",
        payload=Alert,
        transport="stream",
        stream="FLEET_EVENTS",
        description="Things an operator should look at.",
        publishers=("watcher", "provisioner", "brain"),
    ),
    Channel(
        key="audit",
        address="fleet.audit.{actor}",
        payload=AuditRecord,
        transport="stream",
        stream="FLEET_AUDIT",
        description="Every decision with its reasoning.",
        publishers=("costguard", "provisioner", "brain", "scaler"),
    ),
    Channel(
        key="unitPing",
        address="fleet.ping.{unit}",
        payload=PingRequest,
        reply=PingReply,
        transport="request",
        description="A unit's liveness ping; it answers with its pid and pool.",
        publishers=("operator", "provisioner"),
        subscribers=("units",),
    ),
    Channel(
        key="dead",
        address="fleet.dead.{subject}",
        payload=DeadLetter,
        transport="stream",
        stream="FLEET_DEAD",
        description="Messages that failed to decode or be handled, with the reason.",
        publishers=("every service",),
    ),
    Channel(
        key="jobs",
        address="fleet.jobs.{priority}.{pool}",
        payload=Job,
        transport="stream",
        stream="JOBS_HIGH, JOBS_NORMAL, JOBS_LOW",
        description="A pool's work queue of one priority (work-queue streams): units of the "
        "pool pull high before normal before low, extend the ack deadline while working "
        "(in-progress acks) and ack when the job's outcome is recorded.",
        publishers=("gateway",),
        subscribers=("units",),
    ),
    Channel(
        key="jobHeld",
        address="fleet.jobheld.{priority}",
        payload=Job,
        transport="stream",
        stream="JOBS_HELD",
        description="Jobs waiting for budget; the gateway routes them when it allows.",
        publishers=("gateway",),
        subscribers=("gateway",),
    ),
    Channel(
        key="jobEvent",
        address="fleet.job.{id}",
        payload=JobEvent,
        transport="stream",
        stream="FLEET_JOBEVENTS",
        description="A job's events: queued, routed, started, progress, succeeded, failed, "
        "retried, dead, cancelled, refused, each with the reason.",
        publishers=("gateway", "units"),
        subscribers=("clients",),
    ),
    Channel(
        key="jobCancel",
        address="fleet.jobctl.cancel",
        payload=JobCancel,
        transport="core",
        description="A cancelled job's id; the unit running it stops it.",
        publishers=("gateway",),
        subscribers=("units",),
    ),
    Channel(
        key="batch",
        address="fleet.batch.{id}",
        payload=BatchStatus,
        transport="stream",
        stream="FLEET_BATCHES",
        description="A batch run's steps: provisioning, progress every `progress_every_s`, "
        "releasing, and the summary of actual against planned time and cost.",
        publishers=("gateway",),
        subscribers=("clients",),
    ),
    Channel(
        key="adminAgents",
        address="fleet.admin.agents",
        payload=AgentResources,
        reply=AgentResourcesReply,
        transport="request",
        description="Secured deployments: before a hosted agent created at runtime exists, "
        "the admin makes its KV buckets and grants the runners its subjects and buckets "
        "(`fleet up --secure` answers); the reply comes once the server applies them.",
        publishers=("gateway",),
        subscribers=("admin",),
    ),
)

EXTRA_CHANNELS: list[Channel] = []
"""Channels other contract modules (API, A2A) register with `register()`."""


def register(channel: Channel) -> Channel:
    """Add a channel to the catalog (used by contract modules beyond the core)."""
    if all(c.key != channel.key for c in EXTRA_CHANNELS):
        EXTRA_CHANNELS.append(channel)
    return channel


def all_channels() -> tuple[Channel, ...]:
    return CHANNELS + tuple(EXTRA_CHANNELS)


def _register_a2a() -> None:
    from contracts.a2a import AgentCard, AgentCardRequest, JsonRpcRequest, StreamResponse

    register(
        Channel(
            key="a2aRpc",
            address="a2a.{agent}.rpc",
            payload=JsonRpcRequest,
            transport="request",
            description="A2A 1.0 JSON-RPC 2.0 calls to an agent (the brain is `fleet`, hosted "
            "agents `agents.<name>`). Streaming methods answer with several messages to the "
            "reply inbox, closed by an empty message with header `A2A-Stream-End: true`.",
            publishers=("clients",),
            subscribers=("brain", "runner"),
        )
    )
    register(
        Channel(
            key="a2aCard",
            address="a2a.{agent}.card",
            payload=AgentCardRequest,
            reply=AgentCard,
            transport="request",
            description="The agent's AgentCard, with a supportedInterfaces entry for NATS.",
            publishers=("clients",),
            subscribers=("brain", "runner"),
        )
    )
    register(
        Channel(
            key="a2aTask",
            address="a2a.{agent}.tasks.{task_id}",
            payload=StreamResponse,
            transport="stream",
            stream="A2A_TASKS",
            description="Every status and artifact event of a task, for late subscribers "
            "and SubscribeToTask.",
            publishers=("brain", "runner"),
            subscribers=("clients",),
        )
    )


def _register_api() -> None:
    from contracts.api.ops import OPS

    for op in OPS:
        key = "api" + "".join(part.capitalize() for part in op.name.replace("_", ".").split("."))
        marks = (
            ("destructive", op.destructive),
            ("costs money", op.costs_money),
            ("writes", op.writes),
        )
        flags = [flag for flag, on in marks if on]
        register(
            Channel(
                key=key,
                address=op.subject,
                payload=op.request,
                reply=op.reply,
                transport="request",
                description=f"{op.description} Served by {op.owner} in the `fleet-api` micro "
                "service; an empty body or a bad field is answered with ApiError (code 400)"
                + (f"; {' and '.join(flags)}." if flags else "."),
                publishers=("clients", "brain", "mcp", "gateway"),
                subscribers=(op.owner,),
            )
        )


_register_a2a()
_register_api()
