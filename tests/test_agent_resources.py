"""A gateway whose deployment creates no resources (`[nats] create_resources = false`, a
secured one) asks the admin on `fleet.admin.agents` for a new agent's buckets and grants
before the agent exists; without an answer, or with a refusal, the create fails with the
reason and changes nothing. (The whole path under `fleet up --secure`, with the admin's
keeper and a server reload: tests/test_up_secure.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from contracts import subjects
from contracts.admin import AgentResources, AgentResourcesReply
from contracts.api.replies import AgentsReply
from services.gateway.service import Gateway, GatewaySettings
from services.kit.binding import creates
from services.kit.config import load_settings
from tests.signing_helpers import signing
from tools.secure.admin import Plan, initialize


@pytest.fixture
async def binding_gateway(nats_url: str, nc: Client, tmp_path: Path) -> AsyncIterator[Gateway]:
    """`fleet init`'s resources, then a gateway that only binds to them."""
    await initialize(nc.jetstream(timeout=10), Plan())
    overrides = {
        "store": {"dir": str(tmp_path / "gw")},
        "nats": {"create_resources": False},
        "signing": signing("gateway"),
        # No runner here: what is checked is the admin's part, before any runner could serve.
        "gateway": {"agent_serve_timeout_s": 0},
    }
    gw = Gateway(load_settings(GatewaySettings, env={}, overrides=overrides), nats_url=nats_url)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()
        creates(True)


async def create(nc: Client, name: str) -> dict[str, object]:
    body = {"name": name, "user": "alice", "system_prompt": "Be brief."}
    reply = await nc.request("fleet.api.agents.create", msgspec.json.encode(body), timeout=45)
    return dict(msgspec.json.decode(reply.data))


async def used(nc: Client) -> AgentsReply:
    reply = await nc.request("fleet.api.agents.list", b'{"user": "alice"}', timeout=5)
    return msgspec.json.decode(reply.data, type=AgentsReply)


async def test_with_nobody_to_make_its_resources_the_agent_is_not_created(
    nc: Client, binding_gateway: Gateway
) -> None:
    answer = await create(nc, "haiku")
    error = answer["error"]
    assert isinstance(error, dict) and error["code"] == 503, answer
    assert subjects.ADMIN_AGENTS in str(error["message"]), answer
    mine = await used(nc)
    assert (mine.agents, mine.used) == ([], 0)


async def test_the_admin_is_asked_before_the_agent_exists_and_its_refusal_undoes_it(
    nc: Client, binding_gateway: Gateway
) -> None:
    asked: list[tuple[str, bool]] = []
    kv = await nc.jetstream().key_value("fleet_agents")

    async def admin(msg: Msg) -> None:
        call = msgspec.json.decode(msg.data, type=AgentResources)
        exists = True
        try:
            await kv.get(f"agent.{call.name}")
        except Exception:
            exists = False
        asked.append((call.name, exists))
        error = "no room for its buckets" if call.name == "refused" else None
        await msg.respond(msgspec.json.encode(AgentResourcesReply(name=call.name, error=error)))

    sub = await nc.subscribe(subjects.ADMIN_AGENTS, cb=admin)
    try:
        made = await create(nc, "haiku")
        assert "error" not in made, made
        refused = await create(nc, "refused")
    finally:
        await sub.unsubscribe()
    assert asked == [("haiku", False), ("refused", False)]
    error = refused["error"]
    assert isinstance(error, dict) and error["code"] == 503
    assert "no room for its buckets" in str(error["message"])
    mine = await used(nc)
    assert ([a.name for a in mine.agents], mine.used) == (["haiku"], 1)
