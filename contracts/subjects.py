"""Every subject of the contract, built and parsed here and nowhere else."""

from __future__ import annotations

import re

from contracts.commands import VerdictKind
from contracts.events import Severity

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_ID = re.compile(r"^[A-Za-z0-9_:-]{1,128}$")

TELEMETRY_ALL = "fleet.telemetry.>"
METRICS_ALL = "fleet.metrics.>"
ROLLUP_ALL = "fleet.rollup.>"
SCALE_PROPOSED_ALL = "fleet.scale.proposed.>"
PROVISION_REQUESTED = "fleet.provision.requested"
RELEASE_REQUESTED = "fleet.release.requested"
BUDGET_APPROVED = "fleet.budget.approved"
BUDGET_DENIED = "fleet.budget.denied"
BUDGET_HELD = "fleet.budget.held"
BUDGET_DECIDE_ALL = "fleet.budget.decide.*"
UNIT_ALL = "fleet.unit.>"
AUDIT_ALL = "fleet.audit.>"
ALERT_ALL = "fleet.alert.>"
DEAD_ALL = "fleet.dead.>"
API_PREFIX = "fleet.api"
JOBS_ALL = "fleet.jobs.>"
JOB_EVENTS_ALL = "fleet.job.>"
JOB_CANCEL = "fleet.jobctl.cancel"
"""Core NATS: a cancelled job's id, for the unit that may be running it."""
BATCH_ALL = "fleet.batch.>"
ADMIN_AGENTS = "fleet.admin.agents"
"""Core request: a secured deployment's admin makes a runtime agent's resources
(contracts.admin)."""
BRAIN_AGENT = "fleet"
"""The agent name the brain answers A2A as."""
ADVISOR_AGENTS = ("cost-advisor", "performance-advisor")
"""The brain's advisors, A2A agents in its process (`a2a.<name>.rpc`)."""
DEMO_AGENT = "assistant"
"""The demo hosted agent (`agents.assistant`)."""


class SubjectError(ValueError):
    """A subject token or subject that does not fit the contract."""


def token(value: str, what: str = "token") -> str:
    """Check one subject token (pool, unit, actor): letters, digits, `_` and `-`."""
    if not _TOKEN.match(value):
        raise SubjectError(
            f"{what} {value!r} is not a valid subject token: use 1-128 of A-Z a-z 0-9 _ -"
        )
    return value


def covers(pattern: str, subject: str) -> bool:
    """Whether `pattern` matches every subject that `subject` (itself possibly a pattern
    with `*` and `>`) can match; for a plain subject, whether the pattern matches it."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or s[i] == ">" or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


def telemetry(pool: str, unit: str) -> str:
    return f"fleet.telemetry.{token(pool, 'pool')}.{token(unit, 'unit')}"


def metrics(pool: str) -> str:
    return f"fleet.metrics.{token(pool, 'pool')}"


def rollup(pool: str) -> str:
    """A pool's per-minute aggregates (stream FLEET_ROLLUP)."""
    return f"fleet.rollup.{token(pool, 'pool')}"


def scale_proposed(pool: str) -> str:
    return f"fleet.scale.proposed.{token(pool, 'pool')}"


def budget(decision: VerdictKind) -> str:
    return f"fleet.budget.{decision}"


def budget_decide(request_id: str) -> str:
    if not _ID.match(request_id):
        raise SubjectError(f"request id {request_id!r} cannot be used in a subject")
    return f"fleet.budget.decide.{request_id}"


def unit(pool: str, unit_id: str) -> str:
    return f"fleet.unit.{token(pool, 'pool')}.{token(unit_id, 'unit')}"


def units_of(pool: str) -> str:
    """Every unit event of one pool."""
    return f"fleet.unit.{token(pool, 'pool')}.*"


def unit_ping(unit_id: str) -> str:
    """Where a unit answers liveness pings: `fleet.ping.<unit>` (core request/reply)."""
    return f"fleet.ping.{token(unit_id, 'unit')}"


def jobs(priority: str, pool: str) -> str:
    """`fleet.jobs.<priority>.<pool>`: a pool's work queue of one priority."""
    return f"fleet.jobs.{token(priority, 'priority')}.{token(pool, 'pool')}"


def job(job_id: str) -> str:
    """`fleet.job.<id>`: every event of one job."""
    return f"fleet.job.{token(job_id, 'job id')}"


def batch(batch_id: str) -> str:
    """A batch run's steps and progress (`fleet.batch.<id>`)."""
    return f"fleet.batch.{token(batch_id, 'batch id')}"


def job_held(priority: str) -> str:
    """`fleet.jobheld.<priority>`: jobs waiting for budget."""
    return f"fleet.jobheld.{token(priority, 'priority')}"


def parse_jobs(subject: str) -> tuple[str, str]:
    """(priority, pool) of a work-queue subject."""
    return _parse2(subject, "fleet.jobs.")


def audit(actor: str) -> str:
    return f"fleet.audit.{token(actor, 'actor')}"


def alert(severity: Severity) -> str:
    return f"fleet.alert.{severity}"


def dead(original: str) -> str:
    return f"fleet.dead.{original}"


def api(op: str) -> str:
    """`fleet.api.<op>`; ops may be dotted (`units.list`)."""
    for part in op.split("."):
        token(part, "api operation")
    return f"{API_PREFIX}.{op}"


def _agent(agent: str) -> str:
    for part in agent.split("."):
        token(part, "agent name")
    return agent


def a2a_rpc(agent: str) -> str:
    return f"a2a.{_agent(agent)}.rpc"


def a2a_rpc_as(agent: str, tenant: str) -> str:
    """`a2a.<agent>.rpc.<tenant>`: a call as `tenant`. A secured deployment lets only the
    tenant's own identity publish there, so the agent takes the tenant from the subject,
    not from the `Fleet-Tenant` header."""
    return f"{a2a_rpc(agent)}.{token(tenant, 'tenant')}"


def a2a_rpc_tenants(agent: str) -> str:
    """Every tenant's rpc subject of `agent` (one subscription per process)."""
    return f"{a2a_rpc(agent)}.*"


def rpc_tenant(subject: str) -> str | None:
    """The tenant of an rpc subject (`a2a.<agent>.rpc.<tenant>`); None for the bare
    `a2a.<agent>.rpc`."""
    head, sep, tail = subject.rpartition(".rpc.")
    if not sep or not head.startswith("a2a.") or "." in tail or not _TOKEN.match(tail):
        return None
    return tail


def a2a_card(agent: str) -> str:
    return f"a2a.{_agent(agent)}.card"


def a2a_task(agent: str, task_id: str) -> str:
    return f"a2a.{_agent(agent)}.tasks.{token(task_id, 'task id')}"


def a2a_cancel(agent: str, task_id: str) -> str:
    """Where a CancelTask is forwarded to the process that runs the task (not streamed)."""
    return f"a2a.{_agent(agent)}.cancel.{token(task_id, 'task id')}"


def a2a_cancel_all(agent: str) -> str:
    """Every forwarded CancelTask of `agent` (one subscription per process)."""
    return f"a2a.{_agent(agent)}.cancel.*"


def hosted_agent(name: str) -> str:
    """The A2A agent name of hosted agent `name`: `agents.<name>`."""
    return f"agents.{token(name, 'agent name')}"


AGENT_POOL_PREFIX = "agents-"


def agent_pool(name: str) -> str:
    """The pool that runs hosted agent `name`: `agents-<name>`."""
    return f"{AGENT_POOL_PREFIX}{token(name, 'agent name')}"


def agent_of_pool(pool: str) -> str | None:
    """The hosted agent whose pool `pool` is (`agents-<name>` -> `name`), or None."""
    name = pool[len(AGENT_POOL_PREFIX) :] if pool.startswith(AGENT_POOL_PREFIX) else ""
    return name if name and _TOKEN.match(name) else None


ADHOC_PREFIX = "adhoc-"
"""Pools named `adhoc-<model>` hold explicit provisions of a model no configured pool runs."""


def adhoc_pool(gpu_model: str) -> str:
    """The ad-hoc pool of a GPU model (`A100-80GB` -> `adhoc-a100-80gb`)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", gpu_model.lower()).strip("-")[:60] or "any"
    return ADHOC_PREFIX + slug


def is_adhoc(pool: str) -> bool:
    """Whether `pool` is an ad-hoc pool (see `adhoc_pool`)."""
    return pool.startswith(ADHOC_PREFIX)


def parse_telemetry(subject: str) -> tuple[str, str]:
    """(pool, unit) of a telemetry subject."""
    return _parse2(subject, "fleet.telemetry.")


def parse_unit(subject: str) -> tuple[str, str]:
    """(pool, unit) of a unit-event subject."""
    return _parse2(subject, "fleet.unit.")


def parse_metrics(subject: str) -> str:
    return _parse1(subject, "fleet.metrics.")


def parse_scale_proposed(subject: str) -> str:
    return _parse1(subject, "fleet.scale.proposed.")


def parse_budget_decide(subject: str) -> str:
    return _parse1(subject, "fleet.budget.decide.")


def parse_dead(subject: str) -> str:
    """The original subject of a dead-letter subject."""
    if not subject.startswith("fleet.dead."):
        raise SubjectError(f"{subject!r} is not a dead-letter subject")
    return subject[len("fleet.dead.") :]


def _parse1(subject: str, prefix: str) -> str:
    if not subject.startswith(prefix):
        raise SubjectError(f"{subject!r} does not start with {prefix!r}")
    return token(subject[len(prefix) :])


def _parse2(subject: str, prefix: str) -> tuple[str, str]:
    if not subject.startswith(prefix):
        raise SubjectError(f"{subject!r} does not start with {prefix!r}")
    parts = subject[len(prefix) :].split(".")
    if len(parts) != 2:
        raise SubjectError(f"{subject!r} should be {prefix}<pool>.<unit>")
    return token(parts[0], "pool"), token(parts[1], "unit")
