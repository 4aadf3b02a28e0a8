"""Least privilege on the broker: what each identity of a secured deployment may do.

Pure: from the contract (streams, buckets, durables, `fleet.api` owners) and the
deployment's agents, pools and tenants to one `Permissions` per identity, which
`natsconf` writes as a nats-server `authorization` block. The rules
(docs/adr/0013-least-privilege.md):

- No identity but the admin may create, change or delete a stream or a durable
  (`fleet init` does that): so no one can add a stream that republishes into
  `fleet.budget.approved`, or source FLEET_CMDS from elsewhere with a subject
  transform. Stream and consumer *metadata* (INFO, NAMES, LIST) is readable by
  every service: it carries counts, never a message.
- A service reads its own durables only (`MSG.NEXT`, acks), publishes only the
  subjects it owns, serves only its own `fleet.api` operations, and writes only
  its own lease key.
- An ephemeral consumer can deliver a stream's messages to *any* subject, and a
  stream stores what is delivered to its subjects (a push consumer is a
  republish by other means). So an identity may create consumers only on streams
  whose content it does not write, except where its own job needs it (listed
  with each grant below); verdict signatures (ADR 0012) cover the rest.
- A tenant publishes only on `a2a.<agent>.rpc.<tenant>`, reads only its own
  inbox `_INBOX.<tenant>.>`, and nothing else: it gets task events through
  SubscribeToTask, which checks the task's tenant against the subject's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from contracts import subjects
from contracts.api.ops import BY_NAME
from contracts.api.tools import HOSTED_AGENT_TOOLS, MCP_TOOLS
from contracts.buckets import A2A_TASKS as A2A_TASK_BUCKETS
from contracts.buckets import (
    AGENTS,
    BATCH_DRIVERS,
    BATCHES,
    FOLLOWUPS,
    LEASES,
    RATES,
    RUNNER_CLAIMS,
    RUNNER_SESSIONS,
)
from contracts.durables import DurableSpec, durables_of
from contracts.streams import (
    FLEET_AUDIT,
    FLEET_BATCHES,
    FLEET_CMDS,
    FLEET_DEAD,
    FLEET_EVENTS,
    FLEET_JOBEVENTS,
    FLEET_METRICS,
    FLEET_ROLLUP,
    JOBS_HELD,
    JOBS_STREAMS,
)
from tools.secure.identities import ADMIN, OPERATOR, WORKER, inbox_prefix

METADATA = (
    "$JS.API.INFO",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.LIST",
    "$JS.API.STREAM.INFO.*",
    "$JS.API.CONSUMER.NAMES.*",
    "$JS.API.CONSUMER.LIST.*",
    "$JS.API.CONSUMER.INFO.*.*",
)
"""Counts and configs of streams and consumers, never a message: `fleet status`, lag gauges."""

JOB_QUEUES = tuple(s.name for s in JOBS_STREAMS.values())


@dataclass
class Permissions:
    """What one identity may publish and subscribe to (NATS allow lists)."""

    publish: list[str] = field(default_factory=list)
    subscribe: list[str] = field(default_factory=list)

    def pub(self, *subs: str) -> Permissions:
        self.publish.extend(s for s in subs if s not in self.publish)
        return self

    def sub(self, *subs: str) -> Permissions:
        self.subscribe.extend(s for s in subs if s not in self.subscribe)
        return self


@dataclass(frozen=True)
class Deployment:
    """What the grants depend on beyond the contract."""

    agents: tuple[str, ...] = ()
    """Hosted agents served by runners (`[runner] agents`), e.g. `assistant`."""
    tenants: tuple[str, ...] = ()


# -- building blocks -------------------------------------------------------------------


def consume(d: DurableSpec) -> tuple[str, ...]:
    """Bind to durable `d` and read it: info, fetch, ack (nak, term, in-progress)."""
    return (
        f"$JS.API.CONSUMER.INFO.{d.stream}.{d.name}",
        f"$JS.API.CONSUMER.MSG.NEXT.{d.stream}.{d.name}",
        f"$JS.ACK.{d.stream}.{d.name}.>",
    )


def pool_consume(stream: str) -> tuple[str, ...]:
    """Read any pool's `units-<pool>` durable on a job queue (units of every pool)."""
    return (
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.*",
        f"$JS.ACK.{stream}.*.>",
    )


def read_messages(stream: str) -> tuple[str, ...]:
    """Get single messages of `stream` by sequence or subject."""
    return (
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
    )


def ephemeral(stream: str) -> tuple[str, ...]:
    """Create unnamed push consumers on `stream`: replays (`fleet tail --since`), KV
    listings and watches. See the module's note: such an identity can deliver the stream
    anywhere. Only the unnamed form of CONSUMER.CREATE (the server refuses a durable
    name there), and neither fetching from nor deleting a consumer: those would reach
    the services' durables (taking their messages, or a durable itself)."""
    return (f"$JS.API.CONSUMER.CREATE.{stream}", "$JS.FC.>")


def ephemeral_pull(stream: str) -> tuple[str, ...]:
    """Unnamed pull consumers too, on a stream no durable reads (their names are random,
    so fetching is granted on the whole stream)."""
    return (*ephemeral(stream), f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>")


def kv_read(bucket: str) -> tuple[str, ...]:
    return read_messages(f"KV_{bucket}")


def kv_write(bucket: str, key: str = ">") -> tuple[str, ...]:
    """Put, create, update and delete `key` (a pattern) of `bucket`."""
    return (f"$KV.{bucket}.{key}",)


def kv_own(bucket: str) -> tuple[str, ...]:
    """Everything on a bucket the identity alone uses: read and write. Listing its keys
    needs no more (services.kit.buckets.bucket_keys reads the stream's subject counts,
    metadata), so no consumer on a bucket the identity writes."""
    return (*kv_read(bucket), *kv_write(bucket))


def serves(owner: str) -> tuple[str, ...]:
    """The `fleet.api` operations `owner` serves (contracts/api/ops.py)."""
    return tuple(subjects.api(op.name) for op in BY_NAME.values() if op.owner == owner)


def lease(service: str) -> tuple[str, ...]:
    """A singleton's lease: read the bucket, write its own key only. No consumers on it:
    a singleton writes its key's content, and a consumer could deliver it anywhere."""
    return (*kv_read(LEASES.name), *kv_write(LEASES.name, service))


def service_base(name: str) -> Permissions:
    """What every service needs: its inbox, NATS micro discovery, metadata, answering
    requests (replies go to the requester's inbox), dead letters, its audit subject."""
    perms = Permissions()
    perms.pub(*METADATA, "_INBOX.>", subjects.DEAD_ALL, subjects.audit(name))
    perms.sub(f"{inbox_prefix(name)}.>", "$SRV.>", f"fleet.svc.{name}.>", *serves(name))
    for d in durables_of(name):
        perms.pub(*consume(d))
    return perms


def agent_buckets(agent: str) -> Iterable[str]:
    """The KV buckets of hosted agent `agent` (`agents.<name>`)."""
    full = subjects.hosted_agent(agent)
    for family in (A2A_TASK_BUCKETS, RUNNER_SESSIONS, RUNNER_CLAIMS):
        yield family.for_agent(full).name


# -- the identities --------------------------------------------------------------------


def watcher() -> Permissions:
    p = service_base("watcher")
    p.sub(subjects.TELEMETRY_ALL)
    # Failed units are the watcher's to declare; alerts for missed heartbeats.
    p.pub("fleet.metrics.>", subjects.UNIT_ALL, subjects.ALERT_ALL)
    p.pub(subjects.ROLLUP_ALL)  # the per-minute rollup of each pool, kept for reports
    for q in JOB_QUEUES:  # queue depth: the oldest job's age
        p.pub(*read_messages(q))
    return p


def scaler() -> Permissions:
    p = service_base("scaler")
    p.pub("fleet.scale.proposed.>", subjects.RELEASE_REQUESTED, *lease("scaler"))
    return p


def costguard() -> Permissions:
    p = service_base("costguard")
    p.pub(subjects.BUDGET_APPROVED, subjects.BUDGET_DENIED, subjects.BUDGET_HELD)
    p.pub(subjects.ALERT_ALL, subjects.api("gpus.available"), *lease("costguard"))
    # An unsigned end of a unit it bills is checked with the provisioner (refusals.py).
    p.pub(subjects.api("units.list"))
    p.sub(subjects.BUDGET_DECIDE_ALL)
    # A fresh store rebuilds the ledger: the cost-guard replaces its own unit-event durable.
    own = f"{FLEET_EVENTS.name}.costguard-units"
    p.pub(f"$JS.API.CONSUMER.DELETE.{own}", f"$JS.API.CONSUMER.CREATE.{own}.>")
    p.pub(f"$JS.API.CONSUMER.CREATE.{own}", f"$JS.API.CONSUMER.DURABLE.CREATE.{own}")
    return p


def unit_work(p: Permissions) -> Permissions:
    """What a unit needs to run its pool's jobs: sim units run in the provisioner, the
    `local` provider's GPU workers as the `worker` identity."""
    for q in JOB_QUEUES:
        p.pub(*pool_consume(q))
    p.pub(subjects.JOB_EVENTS_ALL, subjects.TELEMETRY_ALL, *ephemeral_pull(FLEET_JOBEVENTS.name))
    p.sub(subjects.JOB_CANCEL, "fleet.ping.*", subjects.UNIT_ALL)
    return p


def provisioner() -> Permissions:
    p = unit_work(service_base("provisioner"))
    p.pub(subjects.UNIT_ALL, subjects.ALERT_ALL, "fleet.ping.*", *lease("provisioner"))
    # Replacements and idle cleanup go through the cost-guard like everyone's.
    p.pub(subjects.PROVISION_REQUESTED, subjects.RELEASE_REQUESTED)
    p.sub(subjects.TELEMETRY_ALL)
    return p


def gateway() -> Permissions:
    p = service_base("gateway")
    p.pub(subjects.PROVISION_REQUESTED, subjects.RELEASE_REQUESTED, subjects.ALERT_ALL)
    p.pub(subjects.JOBS_ALL, "fleet.jobheld.*", subjects.JOB_EVENTS_ALL, subjects.JOB_CANCEL)
    p.pub(subjects.BATCH_ALL)  # batch runs' steps and progress
    # Batch runs kept for whichever gateway carries them on: their records, driver leases
    # and last steps (their units', jobs' and provision's events are read from their
    # start through HISTORY_READ, as the history report reads them).
    p.pub(*kv_own(BATCHES.name), *kv_own(BATCH_DRIVERS.name), *read_messages(FLEET_BATCHES.name))
    for s in HISTORY_READ:  # fleet.api.fleet_report reads days of history
        p.pub(*ephemeral(s), *read_messages(s))
    p.pub("fleet.api.>", "$SRV.>", "fleet.svc.>")  # composes the owners' operations; health
    p.pub(*kv_own(AGENTS.name), *ephemeral_pull(FLEET_JOBEVENTS.name))
    # Hosted agents made at runtime: the admin makes their buckets and grants first
    # (tools/secure/keeper.py); their own runners' unit events say when they are ready.
    p.pub(subjects.ADMIN_AGENTS)
    # agents.create asks a new agent's card: is the name served already, is it served now
    # (services/gateway/agentcheck.py).
    p.pub("a2a.agents.*.card")
    for q in (*JOB_QUEUES, JOBS_HELD.name):
        p.pub(*read_messages(q))
    p.sub("fleet.budget.*", subjects.JOB_EVENTS_ALL, subjects.UNIT_ALL)
    return p


def brain() -> Permissions:
    p = service_base("brain")
    p.pub("fleet.api.>", subjects.ALERT_ALL, *lease("brain"), *kv_own(FOLLOWUPS.name))
    # The brain's agent and its advisors' (which it consults, as the coordinator).
    for agent in (subjects.BRAIN_AGENT, *subjects.ADVISOR_AGENTS):
        p.pub(f"a2a.{agent}.tasks.*", f"a2a.{agent}.cancel.*", subjects.a2a_rpc(agent))
        p.pub(*kv_own(A2A_TASK_BUCKETS.for_agent(agent).name), subjects.audit(agent))
        p.sub(subjects.a2a_rpc(agent), f"{subjects.a2a_rpc(agent)}.*", subjects.a2a_card(agent))
        p.sub(f"a2a.{agent}.cancel.*", f"a2a.{agent}.tasks.*")
    return p


def runner(d: Deployment) -> Permissions:
    """Hosted-agent runners: processes on machines we rent, so the least of all services.
    They report telemetry, hear their own unit's events and pings, serve their agents
    (task events, their buckets) and share the tenants' rate counts."""
    p = service_base("runner")
    p.pub(subjects.TELEMETRY_ALL)
    p.sub(subjects.UNIT_ALL, "fleet.ping.*")
    p.pub(*kv_own(RATES.name), *kv_read(AGENTS.name), *ephemeral(f"KV_{AGENTS.name}"))
    # Agents' tool calls: only the operations behind the tools an agent may be given,
    # each call audited under the agent's name.
    p.pub(*sorted({subjects.api(MCP_TOOLS[t]) for t in HOSTED_AGENT_TOOLS}))
    for agent in d.agents:
        full = subjects.hosted_agent(agent)
        p.pub(f"a2a.{full}.tasks.*", f"a2a.{full}.cancel.*", subjects.audit(f"agent-{agent}"))
        p.sub(subjects.a2a_rpc(full), f"{subjects.a2a_rpc(full)}.*", subjects.a2a_card(full))
        p.sub(f"a2a.{full}.cancel.*", f"a2a.{full}.tasks.*")
        for bucket in agent_buckets(agent):
            p.pub(*kv_own(bucket))
    return p


HISTORY_READ = (
    FLEET_METRICS.name,
    FLEET_ROLLUP.name,
    FLEET_CMDS.name,
    FLEET_EVENTS.name,
    FLEET_AUDIT.name,
    FLEET_JOBEVENTS.name,
)
"""What the gateway's history report reads (services/gateway/history)."""

OPERATOR_STREAMS = (
    FLEET_ROLLUP.name,
    FLEET_BATCHES.name,
    FLEET_METRICS.name,
    FLEET_CMDS.name,
    FLEET_EVENTS.name,
    FLEET_AUDIT.name,
    FLEET_DEAD.name,
    FLEET_JOBEVENTS.name,
)
"""What `fleet tail --since` and `fleet replay --from-stream` replay: not A2A_TASKS,
whose events belong to tenants."""


def operator() -> Permissions:
    """People at a terminal: status, tail, approve/reject, jobs, agents, and A2A calls
    as the tenant `operator`. Not the tenants' task events."""
    p = Permissions()
    p.pub(*METADATA, "fleet.api.>", subjects.BUDGET_DECIDE_ALL, "$SRV.>", "fleet.svc.>")
    p.pub("$JS.FC.>")
    p.pub(*tenant_calls(OPERATOR))
    for s in OPERATOR_STREAMS:
        p.pub(*ephemeral(s), *read_messages(s))
    p.pub(*kv_read(LEASES.name), *kv_read(AGENTS.name))
    p.sub(f"{inbox_prefix(OPERATOR)}.>", "fleet.>")
    return p


def tenant_calls(tenant: str) -> tuple[str, ...]:
    """Call any agent as `tenant`, and read agent cards."""
    return (
        f"a2a.*.rpc.{tenant}",
        f"a2a.agents.*.rpc.{tenant}",
        "a2a.*.card",
        "a2a.agents.*.card",
    )


def tenant(name: str) -> Permissions:
    p = Permissions()
    p.pub(*tenant_calls(name))
    p.sub(f"{inbox_prefix(name)}.>")
    return p


def grants(d: Deployment) -> dict[str, Permissions | None]:
    """Every identity's permissions; None for the admin, who may do anything."""
    out: dict[str, Permissions | None] = {
        "watcher": watcher(),
        "scaler": scaler(),
        "costguard": costguard(),
        "provisioner": provisioner(),
        "gateway": gateway(),
        "brain": brain(),
        "runner": runner(d),
        WORKER: unit_work(service_base(WORKER)),
        OPERATOR: operator(),
    }
    for t in d.tenants:
        out[t] = tenant(t)
    out[ADMIN] = None
    return out
