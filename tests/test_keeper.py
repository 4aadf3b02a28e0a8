"""The admin's keeper of runtime agents (tools/secure/keeper.py) on a real secured server
started as `fleet up --secure` starts it: agents an earlier run made are granted again
at start, and one asked for on `fleet.admin.agents` gets its buckets and the runners'
grants, applied by a reload, before the answer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import msgspec
import nats
import pytest
from nats.aio.client import Client

from contracts import subjects
from contracts.admin import AgentResources, AgentResourcesReply
from tools.natsserver import reload_auth, start_nats, stop_nats
from tools.secure.admin import Plan, init_server
from tools.secure.grants import Deployment, grants
from tools.secure.identities import ADMIN, Identity, ensure_identities
from tools.secure.keeper import AgentKeeper
from tools.secure.natsconf import render_auth

DEPLOYMENT = Deployment(agents=("assistant",), tenants=())


class Server:
    def __init__(self, where: Path, url: str, identities: dict[str, Identity], proc: object):
        self.where, self.url, self.identities, self.proc = where, url, identities, proc

    async def login(self, who: str) -> Client:
        async def quiet(_exc: Exception) -> None:
            return None

        return await nats.connect(
            self.url,
            nkeys_seed=str(self.identities[who].seed_file),
            inbox_prefix=self.identities[who].inbox_prefix,
            error_cb=quiet,
            allow_reconnect=False,
        )

    def keeper(self) -> AgentKeeper:
        return AgentKeeper(
            self.url,
            self.identities,
            Plan(agents=DEPLOYMENT.agents),
            DEPLOYMENT,
            apply=lambda auth: reload_auth(self.proc, self.where / "nats", auth),  # type: ignore[arg-type]
            auth_file=str(self.where / "auth.conf"),
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    identities = ensure_identities(tmp_path / "creds", [])
    proc, url = start_nats(tmp_path / "nats", auth=render_auth(identities, grants(DEPLOYMENT)))
    try:
        asyncio.run(init_server(url, Plan(agents=DEPLOYMENT.agents), identities[ADMIN].seed_file))
        yield Server(tmp_path, url, identities, proc)
    finally:
        stop_nats(proc)


async def may_read_tasks(runner: Client, agent: str) -> bool:
    bucket = f"A2A_TASKS_agents_{agent}"
    try:
        probe = msgspec.json.encode({"last_by_subj": f"$KV.{bucket}.x"})
        await runner.request(f"$JS.API.STREAM.MSG.GET.KV_{bucket}", probe, timeout=1)
    except nats.errors.TimeoutError:  # refused: the request goes nowhere
        return False
    return True


async def test_agents_of_an_earlier_run_are_granted_at_start_and_new_ones_on_request(
    server: Server,
) -> None:
    admin = await server.login(ADMIN)
    runner = await server.login("runner")
    gateway = await server.login("gateway")
    keeper = server.keeper()
    try:
        agents = await admin.jetstream().key_value("fleet_agents")
        await agents.put("agent.haiku", b'{"name": "haiku"}')  # an earlier run made it
        await agents.put("agent.gone", b'{"name": "gone"}')
        await agents.delete("agent.gone")  # ... and one since deleted
        assert not await may_read_tasks(runner, "haiku")

        assert await keeper.start() == ["haiku"]
        assert await may_read_tasks(runner, "haiku")  # the connection it already had
        assert not await may_read_tasks(runner, "gone")
        assert "A2A_TASKS_agents_haiku" in (server.where / "auth.conf").read_text()

        ask = msgspec.json.encode(AgentResources(name="sonnet"))
        reply = await gateway.request(subjects.ADMIN_AGENTS, ask, timeout=15)
        assert msgspec.json.decode(reply.data, type=AgentResourcesReply).error is None
        assert await may_read_tasks(runner, "sonnet")
        assert "sonnet" in keeper.granted

        bad = await gateway.request(subjects.ADMIN_AGENTS, b'{"name": "../x"}', timeout=15)
        answer = msgspec.json.decode(bad.data, type=AgentResourcesReply)
        assert answer.error is not None and "bad request" in answer.error
    finally:
        await keeper.close()
        for nc in (admin, runner, gateway):
            await nc.close()
