"""A tenant is the subject a call came on (`a2a.<agent>.rpc.<tenant>`), which a secured
server lets only that tenant's identity publish on; the `Fleet-Tenant` header cannot
claim another tenant there."""

from __future__ import annotations

import asyncio
import gc
import json
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from contracts import subjects
from contracts.a2a import HEADER_TENANT, TaskState
from services.a2a.client import A2AClient, A2AError
from services.kit.config import KitSettings, load_settings
from tests.test_a2a_binding import AGENT, started


@pytest.fixture
def settings(tmp_path: Path) -> KitSettings:
    return load_settings(
        KitSettings, env={}, overrides={"store": {"dir": str(tmp_path)}, "stop_deadline_s": 0.5}
    )


def test_the_tenant_of_an_rpc_subject_is_its_last_token() -> None:
    assert subjects.a2a_rpc_as("fleet", "acme") == "a2a.fleet.rpc.acme"
    assert subjects.rpc_tenant("a2a.fleet.rpc.acme") == "acme"
    assert subjects.rpc_tenant("a2a.agents.assistant.rpc.acme") == "acme"
    assert subjects.rpc_tenant("a2a.fleet.rpc") is None
    assert subjects.rpc_tenant("a2a.agents.assistant.rpc") is None
    assert subjects.rpc_tenant("fleet.api.rpc.acme") is None
    with pytest.raises(subjects.SubjectError):
        subjects.a2a_rpc_as("fleet", "a.b")


async def raw_call(nc: Client, subject: str, method: str, params: dict, tenant: str | None) -> dict:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    headers = {HEADER_TENANT: tenant} if tenant else None
    reply = await nc.request(subject, body, timeout=10, headers=headers)
    answer: dict = json.loads(reply.data)
    return answer


async def test_a_call_on_a_tenant_subject_cannot_reach_another_tenants_task(
    nats_url: str, nc: Client, settings: KitSettings
) -> None:
    svc = await started(settings, nats_url)
    try:
        acme = A2AClient(nc, AGENT, tenant="acme", timeout_s=10)
        assert acme.subject == "a2a.toyagent.rpc.acme"
        task = await acme.send("hello")
        assert task.status.state == TaskState.COMPLETED
        as_globex = subjects.a2a_rpc_as(AGENT, "globex")

        claimed = await raw_call(nc, as_globex, "GetTask", {"id": task.id}, tenant="acme")
        assert claimed["error"]["code"] == -32600
        assert "not the tenant of the subject" in claimed["error"]["message"]

        plain = await raw_call(nc, as_globex, "GetTask", {"id": task.id}, tenant=None)
        assert plain["error"]["code"] == -32001  # not found: not globex's

        own = await raw_call(
            nc, subjects.a2a_rpc_as(AGENT, "acme"), "GetTask", {"id": task.id}, None
        )
        assert own["result"]["id"] == task.id
        # The bare subject (services and unsecured deployments) still takes the header.
        header = await raw_call(nc, subjects.a2a_rpc(AGENT), "GetTask", {"id": task.id}, "acme")
        assert header["result"]["id"] == task.id
    finally:
        await svc.stop()


async def test_an_error_ending_a_stream_leaves_no_task_to_fail_when_the_connection_closes(
    nats_url: str, nc: Client, settings: KitSettings
) -> None:
    """`fleet ask --tenant 'x y'`: the agent answers the streaming call with an error; the
    caller says so and closes its connection, and nothing fails later in the background
    (the stream's subscription is gone before the connection is)."""
    svc = await started(settings, nats_url)
    caller = await nats.connect(nats_url)
    loop = asyncio.get_running_loop()
    failures: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: failures.append(context))
    try:
        client = A2AClient(caller, AGENT, tenant="x y", timeout_s=10)
        with pytest.raises(A2AError) as raised:
            async for _ in client.stream("hello"):
                pass
        assert raised.value.code == -32600 and "tenant" in str(raised.value)
        await caller.close()
        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0)
        assert failures == []
    finally:
        loop.set_exception_handler(None)
        if not caller.is_closed:
            await caller.close()
        await svc.stop()
