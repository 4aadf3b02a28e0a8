"""The durable JetStream consumers of the contract: who reads what, under which name.

A secured deployment creates every stream, durable and KV bucket in one admin
step (`fleet init`) and lets each service only bind to its own durables, so the
durables are part of the contract like the streams: their names are what the
NATS permissions grant (`$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>`). The
values here are the ones the services ask for when they create a durable
themselves (an unsecured `fleet up`, the tests); `tests/test_init.py` checks that
both ways give the same consumers.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from contracts import subjects
from contracts.jobs import PRIORITIES
from contracts.streams import (
    FLEET_CMDS,
    FLEET_EVENTS,
    FLEET_METRICS,
    JOBS_HELD,
    JOBS_STREAMS,
)


class DurableSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One durable pull consumer: its stream, its filter, and its delivery settings."""

    name: str
    stream: str
    subject: str
    """The filter subject (a pattern of the stream's subjects)."""
    owner: str
    """The service (or `units`, a pool's units) that reads it; the only identity granted it."""
    deliver: Literal["all", "new"] = "all"
    """`new` for a consumer that needs only what arrives after it first started."""
    ack_wait_s: float = 30.0
    max_deliver: int = 10
    """Deliveries before a message is dead-lettered; -1 leaves it to the reader."""
    max_ack_pending: int = -1
    """-1: the server's default (1,000)."""
    settings: str = ""
    """The `[section]` whose keys decide `ack_wait_s` and `max_deliver` in a deployment
    (empty: the values above); `fleet init` reads them from fleet.toml."""


DURABLES: tuple[DurableSpec, ...] = (
    DurableSpec(
        name="watcher-units", stream=FLEET_EVENTS.name, subject=subjects.UNIT_ALL, owner="watcher"
    ),
    DurableSpec(
        name="scaler-metrics",
        stream=FLEET_METRICS.name,
        subject=subjects.METRICS_ALL,
        owner="scaler",
        deliver="new",
    ),
    DurableSpec(
        name="scaler-units", stream=FLEET_EVENTS.name, subject=subjects.UNIT_ALL, owner="scaler"
    ),
    DurableSpec(
        name="scaler-pins",
        stream=FLEET_CMDS.name,
        subject=subjects.BUDGET_APPROVED,
        owner="scaler",
    ),
    DurableSpec(
        name="costguard-units",
        stream=FLEET_EVENTS.name,
        subject=subjects.UNIT_ALL,
        owner="costguard",
    ),
    DurableSpec(
        name="costguard-proposals",
        stream=FLEET_CMDS.name,
        subject=subjects.SCALE_PROPOSED_ALL,
        owner="costguard",
    ),
    DurableSpec(
        name="costguard-provisions",
        stream=FLEET_CMDS.name,
        subject=subjects.PROVISION_REQUESTED,
        owner="costguard",
    ),
    DurableSpec(
        name="costguard-releases",
        stream=FLEET_CMDS.name,
        subject=subjects.RELEASE_REQUESTED,
        owner="costguard",
    ),
    DurableSpec(
        name="provisioner-approved",
        stream=FLEET_CMDS.name,
        subject=subjects.BUDGET_APPROVED,
        owner="provisioner",
        ack_wait_s=300.0,
        max_deliver=10,
        settings="provisioner",
    ),
    DurableSpec(
        name="provisioner-unit-events",
        stream=FLEET_EVENTS.name,
        subject=subjects.UNIT_ALL,
        owner="provisioner",
        deliver="new",
    ),
    DurableSpec(
        name="gateway-held",
        stream=JOBS_HELD.name,
        subject="fleet.jobheld.*",
        owner="gateway",
        max_deliver=1_000_000,
    ),
)
"""Every service's durables; a pool's job consumers are `pool_durables(pool)`."""


def units_durable(pool: str) -> str:
    """The name of the durable a pool's units share on each priority queue."""
    return f"units-{subjects.token(pool, 'pool')}"


def pool_durables(pool: str) -> tuple[DurableSpec, ...]:
    """The consumer a pool's units share on each priority queue (`units-<pool>`): jobs
    are retried by their own `attempts`, so the server never gives up on one."""
    return tuple(
        DurableSpec(
            name=units_durable(pool),
            stream=JOBS_STREAMS[prio].name,
            subject=subjects.jobs(prio, pool),
            owner="units",
            max_deliver=-1,
            max_ack_pending=10_000,
        )
        for prio in PRIORITIES
    )


def durables_of(owner: str) -> tuple[DurableSpec, ...]:
    """The durables `owner` reads."""
    return tuple(d for d in DURABLES if d.owner == owner)
