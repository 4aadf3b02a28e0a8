"""JetStream key-value buckets: what each holds, how long, and how many revisions.

Buckets are part of the contract like streams (contracts.streams): a secured
deployment's NATS permissions name them, and two processes that open the same
bucket must agree on its shape. Most buckets exist once per
agent (`A2A_TASKS_agents_assistant`); their spec is the family and `for_agent`
gives one member. A TTL of 0 keeps keys until they are deleted; a spec whose
TTL is a setting (the lease length, the session idle time) is opened with that
setting's value. Replicas are the deployment's, as for streams (`[nats] replicas`:
1 on one machine, 3 on a cluster), so they are given when a bucket is opened.
"""

from __future__ import annotations

from typing import Literal

import msgspec

DAY_S = 86400.0


class BucketSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One KV bucket (or, with `per_agent`, the family of one bucket per agent)."""

    name: str
    """The bucket's name, or for a per-agent family the prefix before the agent's name."""
    description: str
    history: int = 1
    """Revisions kept per key; 1 everywhere: readers want the latest value only."""
    ttl_s: float = 0.0
    """Seconds a key lives after its last write; 0 keeps it until deleted."""
    storage: Literal["file", "memory"] = "file"
    marker_ttl_s: float = 0.0
    """Seconds the server keeps the delete marker it writes when a key expires; 0 writes
    none, and then a watcher never learns that a key expired (nats-server 2.11+)."""
    direct: bool = False
    """Allow direct gets: any replica answers a read, without a JetStream API call."""
    per_agent: bool = False
    """One bucket per agent, named `<name>_<agent>`."""
    agent_separators: str = "."
    """Characters of the agent's name written as `_` in the bucket name (a bucket name
    allows no dots; the runner's buckets replaced dashes too, and keep doing so)."""

    def for_agent(self, agent: str) -> BucketSpec:
        """The bucket of agent `agent` in this family."""
        if not self.per_agent:
            raise ValueError(f"bucket {self.name} is not per agent")
        token = agent
        for sep in self.agent_separators:
            token = token.replace(sep, "_")
        return msgspec.structs.replace(self, name=f"{self.name}_{token}", per_agent=False)


LEASES = BucketSpec(
    name="fleet_leases",
    description="singleton leases: key = service, value = holder instance",
    ttl_s=3.0,
    marker_ttl_s=1.0,
)
"""The singletons' leases; its TTL is `[lease] lease_s`, fixed by the first to create it.
An expired lease leaves a marker for a second, so a standby watching the key wakes at
once rather than at its next look (services/kit/lease.py)."""

A2A_TASKS = BucketSpec(
    name="A2A_TASKS",
    description="A2A tasks of one agent, readable by every process that serves it",
    ttl_s=7 * DAY_S,
    direct=True,
    per_agent=True,
)
RUNNER_SESSIONS = BucketSpec(
    name="RUNNER_SESSIONS",
    description="hosted-agent sessions and per-tenant session indexes",
    ttl_s=1800.0,
    direct=True,
    per_agent=True,
    agent_separators=".-",
)
"""Its TTL is `[runner] session_idle_s`: a session expires once idle that long."""

RUNNER_CLAIMS = BucketSpec(
    name="RUNNER_CLAIMS",
    description="runner leases and the tasks each runner runs",
    ttl_s=DAY_S,
    per_agent=True,
    agent_separators=".-",
)

FOLLOWUPS = BucketSpec(
    name="fleet_followups",
    description="follow-up checks the brain runs when due: key = id, value = Followup",
)
"""Kept until run (the brain deletes a follow-up as it claims it)."""

AGENTS = BucketSpec(
    name="fleet_agents",
    description="hosted agents: agent.<name> = AgentSpec, user.<user> = the user's agent names",
)
"""Written by the gateway with compare-and-set (the per-user quota holds across replicas),
watched by every runner."""

AGENT_KEY_PREFIX = "agent."
"""`fleet_agents` keys of agents: `agent.<name>` (the gateway writes them; the runners
and a secured deployment's admin read them)."""


def agent_key(name: str) -> str:
    """The `fleet_agents` key of agent `name`."""
    return AGENT_KEY_PREFIX + name


def agent_of_key(key: str) -> str | None:
    """The agent a `fleet_agents` key holds, or None for another key (`user.<user>`)."""
    return key.removeprefix(AGENT_KEY_PREFIX) if key.startswith(AGENT_KEY_PREFIX) else None


RATES = BucketSpec(
    name="fleet_rates",
    description="per-tenant request counts per minute window, across every runner",
    ttl_s=180.0,
)
"""Keys outlive their minute by two, then expire."""

BATCHES = BucketSpec(
    name="fleet_batches",
    description="batch runs: key = batch id, value = BatchRecord, what a gateway needs "
    "to carry the run on",
    ttl_s=8 * DAY_S,
)
"""Kept as long as the FLEET_BATCHES stream keeps the runs' steps; written by the gateway
driving the run with compare-and-set on the revision it last wrote."""

BATCH_DRIVERS = BucketSpec(
    name="fleet_batch_drivers",
    description="the gateway driving each unfinished batch run: key = batch id, "
    "value = gateway instance",
    ttl_s=6.0,
)
"""One lease per run (services.kit.lease), renewed every third of the TTL: a gateway that
dies has its runs taken over by another (or by itself, restarted) within 6 s. Fixed
here rather than a setting, so every gateway of a deployment agrees on it."""

ALL_BUCKETS: tuple[BucketSpec, ...] = (
    AGENTS,
    BATCHES,
    BATCH_DRIVERS,
    RATES,
    LEASES,
    A2A_TASKS,
    RUNNER_SESSIONS,
    RUNNER_CLAIMS,
    FOLLOWUPS,
)
