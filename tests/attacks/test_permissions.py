"""The permission attacks of issue 13 against `fleet up --secure`, each with every identity
but the cost-guard's; each must fail, and each test checks the effect (no forged verdict
stored, 0 units carried out for it, verdicts still flowing), not only the error.

`just suite attack` (or `.venv/bin/python -m pytest -m "slow and attack"`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RePublish,
    StreamConfig,
    StreamSource,
    SubjectTransform,
)

from contracts import subjects
from contracts.a2a import HEADER_TENANT
from contracts.streams import A2A_TASKS, FLEET_CMDS, stream_for
from services.a2a.client import A2AClient
from tests.attacks.secure_fleet import (
    ATTACKERS,
    SERVICES,
    SecureFleet,
    forged_verdict,
    last_seq,
    provisioner_caught_up,
    refused,
    running_secure_fleet,
    stored_since,
    stream_exists,
    units_of_command,
)

pytestmark = [pytest.mark.slow, pytest.mark.attack, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureFleet]:
    with running_secure_fleet(tmp_path_factory.mktemp("secure")) as running:
        yield running


@pytest.fixture(autouse=True)
async def _close_connections(fleet: SecureFleet) -> AsyncIterator[None]:
    """Every connection a test opened is closed when it ends."""
    yield
    await fleet.close()


@pytest.fixture
async def admin(fleet: SecureFleet) -> Client:
    """The admin's connection, which checks the effects."""
    return await fleet.connect("admin")


async def no_forgery_carried_out(
    fleet: SecureFleet, admin: Client, marker: str, since: int
) -> None:
    """The effect: FLEET_CMDS holds no verdict with `marker`, and once the provisioner has
    settled every approval stored, no unit exists for it."""
    stored = await stored_since(admin, FLEET_CMDS.name, subjects.BUDGET_APPROVED, since + 1)
    assert not [m for m in stored if marker.encode() in m]
    await provisioner_caught_up(admin)
    operator = await fleet.connect("operator")
    assert await units_of_command(operator, marker) == []


@pytest.mark.parametrize("who", ATTACKERS)
async def test_no_identity_can_create_a_stream_that_republishes_into_approvals(
    fleet: SecureFleet, admin: Client, who: str
) -> None:
    since = await last_seq(admin, FLEET_CMDS.name)
    marker = f"forged-republish-{who}"
    nc = await fleet.connect(who)
    js = nc.jetstream(timeout=2)
    evil = StreamConfig(
        name=f"EVIL_{who.upper()}",
        subjects=[f"evil.{who}"],
        republish=RePublish(src=f"evil.{who}", dest=subjects.BUDGET_APPROVED),
    )
    await refused(js.add_stream(evil))
    await nc.publish(f"evil.{who}", forged_verdict(marker))
    await nc.flush()
    assert not await stream_exists(admin, evil.name)
    await no_forgery_carried_out(fleet, admin, marker, since)


async def test_control_the_admin_may_and_the_republish_lands_in_approvals(
    fleet: SecureFleet, admin: Client
) -> None:
    """The same attack with the one identity allowed to create streams: the forged approval
    is stored in FLEET_CMDS, so the checks above would see a success. (Whether the
    provisioner then carries it out is the verdict signatures' part.)"""
    since = await last_seq(admin, FLEET_CMDS.name)
    js = admin.jetstream(timeout=5)
    evil = StreamConfig(
        name="EVIL_ADMIN",
        subjects=["evil.admin"],
        republish=RePublish(src="evil.admin", dest=subjects.BUDGET_APPROVED),
    )
    await js.add_stream(evil)
    try:
        await js.publish("evil.admin", forged_verdict("forged-republish-admin"))
        stored = await stored_since(admin, FLEET_CMDS.name, subjects.BUDGET_APPROVED, since + 1)
        assert [m for m in stored if b"forged-republish-admin" in m]
    finally:
        await js.delete_stream(evil.name)


@pytest.mark.parametrize("who", ATTACKERS)
async def test_no_identity_can_source_fleet_cmds_from_its_own_subjects(
    fleet: SecureFleet, admin: Client, who: str
) -> None:
    """The attacker writes a forged approval where it may (its own audit subject) and tries
    to make FLEET_CMDS source that stream, transformed into `fleet.budget.approved`."""
    since = await last_seq(admin, FLEET_CMDS.name)
    marker = f"forged-source-{who}"
    nc = await fleet.connect(who)
    js = nc.jetstream(timeout=2)
    config = (await admin.jetstream().stream_info(FLEET_CMDS.name)).config
    own = subjects.audit(who)
    config.sources = [
        StreamSource(
            name="FLEET_AUDIT",
            filter_subject=None,
            subject_transforms=[SubjectTransform(src=own, dest=subjects.BUDGET_APPROVED)],
        )
    ]
    await refused(js.update_stream(config))
    await nc.publish(own, forged_verdict(marker))
    await nc.flush()
    after = (await admin.jetstream().stream_info(FLEET_CMDS.name)).config
    assert not after.sources and not after.mirror
    await no_forgery_carried_out(fleet, admin, marker, since)


NO_CONSUMERS = ("watcher", "scaler", "brain", "globex")
"""Identities that may create no consumer at all (the others may on streams they need
to replay, which ADR 0013 lists, and rely on verdict signatures there)."""


@pytest.mark.parametrize("who", NO_CONSUMERS)
async def test_no_consumer_can_be_made_to_deliver_into_approvals(
    fleet: SecureFleet, admin: Client, who: str
) -> None:
    """A push consumer delivers a stream's messages to any subject it is given, and a
    stream stores what is delivered to its subjects: a republish by other means."""
    since = await last_seq(admin, FLEET_CMDS.name)
    marker = f"forged-delivery-{who}"
    nc = await fleet.connect(who)
    await nc.publish(subjects.audit(who), forged_verdict(marker))  # where it may write
    await nc.flush()
    push = ConsumerConfig(
        deliver_subject=subjects.BUDGET_APPROVED,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.NONE,
        filter_subject=subjects.audit(who),
    )
    await refused(nc.jetstream(timeout=2).add_consumer("FLEET_AUDIT", push))
    consumers = await admin.jetstream().consumers_info("FLEET_AUDIT")
    assert [c for c in consumers if c.config.deliver_subject] == []
    await no_forgery_carried_out(fleet, admin, marker, since)


async def test_overwriting_the_costguards_lease_every_2_s_is_refused_and_verdicts_flow(
    fleet: SecureFleet, admin: Client
) -> None:
    kv = await admin.jetstream().key_value("fleet_leases")
    holder = (await kv.get("costguard")).value
    attackers = {who: await fleet.connect(who) for who in ATTACKERS}
    operator = await fleet.connect("operator")
    refusals: list[str] = []

    async def attack(who: str) -> None:
        js = attackers[who].jetstream(timeout=1)
        for _ in range(3):
            refusals.append(await refused(js.publish("$KV.fleet_leases.costguard", who.encode())))
            await asyncio.sleep(2)  # the attack's own pace, as in the issue

    async def ask_for_verdicts() -> list[str]:
        decisions = []
        for i in range(3):
            body = {"pool": "h100", "gpu_model": "H100", "count": 1, "requester": f"op{i}"}
            reply = await operator.request(
                "fleet.api.provision", json.dumps(body).encode(), timeout=20
            )
            decisions.append(str(msgspec.json.decode(reply.data).get("decision")))
            await asyncio.sleep(2)
        return decisions

    decisions, *_ = await asyncio.gather(ask_for_verdicts(), *(attack(w) for w in attackers))
    assert len(refusals) == 3 * len(attackers)
    assert all(d in ("approved", "denied", "held") for d in decisions), decisions
    assert (await kv.get("costguard")).value == holder


async def test_a_tenant_or_the_operator_cannot_read_another_tenants_task_events(
    fleet: SecureFleet,
) -> None:
    acme_nc = await fleet.connect("acme")
    acme = A2AClient(acme_nc, subjects.BRAIN_AGENT, tenant="acme", timeout_s=30)
    first = await acme.send("how much did we spend today?")
    spies = {}
    for who in ("globex", "operator"):
        errors: list[str] = []
        nc = await fleet.connect(who, errors)
        seen: list[bytes] = []

        async def keep(msg: Msg, seen: list[bytes] = seen) -> None:
            seen.append(msg.data)

        await nc.subscribe("a2a.fleet.tasks.>", cb=keep)
        await nc.subscribe("_INBOX.acme.>", cb=keep)
        await nc.flush()
        spies[who] = (nc, seen, errors)

    events = [e async for e in acme.stream("and how many units are ready?")]
    assert events  # acme hears its own task
    for who, (nc, seen, errors) in spies.items():
        assert seen == [], f"{who} read acme's task events"
        assert sum("permissions violation for subscription" in e for e in errors) == 2, errors
        # Asking for acme's task by id, even claiming to be acme, finds nothing.
        spy = A2AClient(nc, subjects.BRAIN_AGENT, tenant=who, timeout_s=10)
        raw = json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": first.id}}
        ).encode()
        answer = json.loads((await nc.request(spy.subject, raw, timeout=10)).data)
        assert "result" not in answer and answer["error"]["code"] == -32001
        claimed = await nc.request(spy.subject, raw, timeout=10, headers={HEADER_TENANT: "acme"})
        assert "result" not in json.loads(claimed.data)
        # Calling as acme is refused by the server: nobody answers.
        await refused(nc.request(subjects.a2a_rpc_as(subjects.BRAIN_AGENT, "acme"), raw), 2)
        # And the stream of task events cannot be replayed.
        await refused(
            nc.jetstream(timeout=2).pull_subscribe("a2a.fleet.tasks.>", stream=A2A_TASKS.name)
        )


UNCONSUMED = {
    "fleet.audit.costguard": {"costguard"},
    "fleet.alert.critical": {"watcher", "costguard", "provisioner", "gateway", "brain"},
    "a2a.fleet.tasks.attack": {"brain"},
    "fleet.job.attack": {"gateway", "provisioner", "runner", "worker"},
    "fleet.dead.attack": set(SERVICES) | {"runner", "worker"},
}
"""Stream subjects no service consumes, with the identities that own them."""
MONEY = {
    subjects.BUDGET_APPROVED: {"costguard"},
    "fleet.scale.proposed.h100": {"scaler"},
    subjects.PROVISION_REQUESTED: {"gateway", "provisioner"},
    "fleet.unit.h100.attack": {"provisioner", "watcher"},
    "fleet.metrics.h100": {"watcher"},
}
"""Consumed subjects that decide what is spent, with their owners."""


@pytest.mark.parametrize("who", ATTACKERS)
async def test_subjects_are_publish_restricted_to_their_owners(
    fleet: SecureFleet, admin: Client, who: str
) -> None:
    errors: list[str] = []
    nc = await fleet.connect(who, errors)
    targets = {s: owners for s, owners in {**UNCONSUMED, **MONEY}.items() if who not in owners}
    starts = {}
    for subject in targets:
        stream = stream_for(subject)
        assert stream is not None
        starts[subject] = (stream.name, await last_seq(admin, stream.name))
    marker = f"garbage-from-{who}"
    for subject in targets:
        await nc.publish(subject, json.dumps({"marker": marker}).encode())
    await nc.flush()
    await nc.flush()  # the server's refusals arrive before the second PONG
    for subject, (stream, since) in starts.items():
        stored = await stored_since(admin, stream, subject, since + 1)
        assert not [m for m in stored if marker.encode() in m], f"{who} wrote to {subject}"
    violations = [e for e in errors if "permissions violation for publish" in e]
    assert len(violations) == len(targets), errors


async def test_the_fleet_did_its_work_without_a_refused_call(
    fleet: SecureFleet, admin: Client
) -> None:
    """The grants are not so tight that the fleet stops: units came up through the
    cost-guard's approvals, and no service was refused anything (the attackers ran on
    connections of their own, so a refusal in the services' logs is a grant missing)."""
    approved = await stored_since(admin, FLEET_CMDS.name, subjects.BUDGET_APPROVED, 1)
    ready = await stored_since(admin, "FLEET_EVENTS", "fleet.unit.h100.*", 1)
    assert approved and [e for e in ready if b'"state":"ready"' in e]
    log = (fleet.cwd / "up.log").read_text()
    assert "permissions violation" not in log, [
        line for line in log.splitlines() if "permissions violation" in line
    ][:5]
