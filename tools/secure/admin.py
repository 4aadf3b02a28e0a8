"""`fleet init`'s work: create every stream, durable consumer and KV bucket as the admin.

In a secured deployment no service may create or change a stream or a consumer
(that right is what let one identity republish into `fleet.budget.approved`), so
what they bind to must exist before they start. It is built here from the
contract (contracts.streams, contracts.durables, contracts.buckets) and the
deployment's settings (pools, hosted agents, lease length, replicas), with the
same configs the services would have created themselves. Running it again
brings streams to the contract's config and leaves existing consumers and
buckets as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import nats
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from contracts import subjects
from contracts.buckets import (
    A2A_TASKS,
    AGENTS,
    BATCH_DRIVERS,
    BATCHES,
    FOLLOWUPS,
    LEASES,
    RATES,
    RUNNER_CLAIMS,
    RUNNER_SESSIONS,
    BucketSpec,
)
from contracts.durables import DURABLES, DurableSpec, pool_durables
from contracts.streams import ALL_STREAMS, retained
from services.kit.buckets import ensure_bucket
from services.kit.bus import ensure_streams


@dataclass(frozen=True)
class Plan:
    """What one `fleet init` creates, from the deployment's settings."""

    replicas: int = 1
    lease_s: float = LEASES.ttl_s
    pools: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    """Hosted agents (`[runner] agents`), by short name (`assistant`)."""
    session_idle_s: float = RUNNER_SESSIONS.ttl_s
    kv_storage: str = "file"
    """Storage of the runners' session and claim buckets (`[runner] kv_storage`)."""
    overrides: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per durable, settings that replace the contract's values (`ack_wait_s`,
    `max_deliver`), as the owning service computes them from fleet.toml."""
    retention: tuple[float, float, float | None] = (8, 35, None)
    """`[retention]` days, rollup_days, metrics_days: the streams' ages (contracts.streams)."""


@dataclass
class Report:
    """What `fleet init` found and made, for its output."""

    streams: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


def consumer_config(d: DurableSpec, overrides: dict[str, float] | None = None) -> ConsumerConfig:
    """The config of durable `d`, as its service's `consume()` would create it."""
    values = {"ack_wait_s": d.ack_wait_s, "max_deliver": float(d.max_deliver)}
    values.update(overrides or {})
    return ConsumerConfig(
        name=d.name,
        durable_name=d.name,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=values["ack_wait_s"],
        max_deliver=int(values["max_deliver"]),
        deliver_policy=DeliverPolicy.NEW if d.deliver == "new" else DeliverPolicy.ALL,
        filter_subject=d.subject,
        max_ack_pending=d.max_ack_pending if d.max_ack_pending > 0 else None,
    )


def durables(plan: Plan) -> list[DurableSpec]:
    """Every durable of the deployment: the services' and each pool's units'."""
    out = list(DURABLES)
    for pool in plan.pools:
        out.extend(pool_durables(pool))
    return out


def buckets(plan: Plan) -> list[tuple[BucketSpec, dict[str, object]]]:
    """Every bucket with the settings that shape it (TTL, storage)."""
    out: list[tuple[BucketSpec, dict[str, object]]] = [
        (LEASES, {"ttl_s": plan.lease_s}),
        (AGENTS, {}),
        (RATES, {}),
        (FOLLOWUPS, {}),
        (BATCHES, {}),
        (BATCH_DRIVERS, {}),
        *((A2A_TASKS.for_agent(a), {}) for a in (subjects.BRAIN_AGENT, *subjects.ADVISOR_AGENTS)),
    ]
    for agent in plan.agents:
        out.extend(agent_buckets(plan, agent))
    return out


def agent_buckets(plan: Plan, agent: str) -> list[tuple[BucketSpec, dict[str, object]]]:
    """The buckets of hosted agent `agents.<agent>`, shaped by the deployment's settings."""
    full = subjects.hosted_agent(agent)
    return [
        (A2A_TASKS.for_agent(full), {}),
        (
            RUNNER_SESSIONS.for_agent(full),
            {"ttl_s": plan.session_idle_s, "storage": plan.kv_storage},
        ),
        (RUNNER_CLAIMS.for_agent(full), {"storage": plan.kv_storage}),
    ]


async def make_buckets(
    js: JetStreamContext,
    specs: list[tuple[BucketSpec, dict[str, object]]],
    replicas: int,
    report: Report,
) -> None:
    """Create each bucket of `specs` that does not exist; existing ones stay as they are."""
    for spec, shape in specs:
        label = f"bucket {spec.name}"
        try:
            await js.key_value(spec.name)
            report.existing.append(label)
            continue
        except Exception:  # nats-py raises BucketNotFoundError or NotFoundError
            pass
        spec = msgspec.structs.replace(spec, **shape) if shape else spec
        await ensure_bucket(js, spec, replicas=replicas, create=True)
        report.created.append(label)


async def initialize(js: JetStreamContext, plan: Plan) -> Report:
    """Create (or bring to the contract) every stream, durable and bucket of `plan`."""
    report = Report()
    specs = retained(ALL_STREAMS, *plan.retention)
    await ensure_streams(js, specs, replicas=plan.replicas)
    report.streams = [s.name for s in specs]
    for d in durables(plan):
        label = f"consumer {d.stream}/{d.name}"
        try:
            await js.consumer_info(d.stream, d.name)
            report.existing.append(label)
            continue
        except NotFoundError:
            pass
        await js.add_consumer(d.stream, config=consumer_config(d, plan.overrides.get(d.name)))
        report.created.append(label)
    await make_buckets(js, buckets(plan), plan.replicas, report)
    return report


async def init_server(url: str, plan: Plan, seed: Path | None) -> Report:
    """Connect (as the admin when `seed` is given) and create what `plan` lists."""
    nc = await nats.connect(
        url,
        name="fleet-init",
        connect_timeout=2,
        allow_reconnect=False,
        nkeys_seed=str(seed) if seed else None,
        inbox_prefix="_INBOX.admin" if seed else "_INBOX",
    )
    try:
        return await initialize(nc.jetstream(timeout=10), plan)
    finally:
        await nc.close()


def summary(report: Report) -> str:
    """One line: what exists now and what this run created."""
    made = len(report.created) or "none"
    return (
        f"fleet init: {len(report.streams)} streams; consumers and buckets: "
        f"{made} created, {len(report.existing)} existed"
    )
