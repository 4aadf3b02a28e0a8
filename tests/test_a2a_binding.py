"""The A2A-over-NATS binding as a client of any agent sees it: the spec's methods,
JSON the official a2a-sdk parses, streams that end, tasks that outlive a restart,
and tenants held to their limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from a2a import types as sdk
from google.api import field_behavior_pb2
from google.protobuf.json_format import MessageToDict, Parse
from nats.aio.client import Client

from contracts import subjects
from contracts.a2a import (
    METHODS,
    AgentCapabilities,
    AgentCard,
    AgentSkill,
    StreamResponse,
    TaskState,
)
from services.a2a import A2AEvent, A2AServer, TaskContext, nats_interface
from services.a2a.client import A2AClient, A2AError
from services.a2a.tenants import A2ASettings
from services.kit import Service
from services.kit.config import KitSettings, load_settings

AGENT = "toyagent"


class Toy:
    """Echoes; `slow` waits until canceled; `ask` needs more input; `boom` fails."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def execute(self, ctx: TaskContext) -> AsyncIterator[A2AEvent]:
        self.started.set()
        text = ctx.text
        if text == "slow":
            yield ctx.status(TaskState.WORKING, "waiting forever")
            await asyncio.Event().wait()
        if text == "boom":
            raise RuntimeError("the toy broke")
        if text == "ask":
            yield ctx.status(TaskState.INPUT_REQUIRED, "which pool?")
            return
        yield ctx.artifact(text=text.upper(), name="answer", artifact_id="a1", last_chunk=False)
        yield ctx.artifact(text="!", artifact_id="a1", append=True)
        yield ctx.status(TaskState.COMPLETED, f"echoed {text}")


def card(nats_url: str) -> AgentCard:
    return AgentCard(
        name=AGENT,
        description="echo",
        supported_interfaces=[nats_interface(AGENT, nats_url)],
        version="1.0.0",
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain", "application/json"],
        skills=[AgentSkill(id="echo", name="Echo", description="echoes", tags=["test"])],
    )


class ToyService(Service):
    name = "toya2a"
    migrations: list[str] = []

    def __init__(self, settings: KitSettings, url: str, a2a: A2ASettings) -> None:
        super().__init__(settings, nats_url=url)
        self.executor = Toy()
        self.a2a_settings = a2a
        self.a2a: A2AServer | None = None

    async def setup(self) -> None:
        self.a2a = await A2AServer.mount(
            self, AGENT, self.executor, card(self.nats_url), self.a2a_settings, queue_group="toy"
        )

    async def teardown(self) -> None:
        if self.a2a is not None:
            await self.a2a.stop()


@pytest.fixture
def settings(tmp_path: Path) -> KitSettings:
    return load_settings(
        KitSettings, env={}, overrides={"store": {"dir": str(tmp_path)}, "stop_deadline_s": 0.5}
    )


async def started(settings: KitSettings, url: str, **a2a: Any) -> ToyService:
    svc = ToyService(settings, url, A2ASettings(**a2a))
    await svc.start()
    return svc


def sdk_parse(obj: Any, cls: Any) -> dict[str, Any]:
    """Parse our JSON into the official type (unknown fields refused), with every field
    the spec marks REQUIRED present; back to a dict."""
    raw = obj if isinstance(obj, bytes | str) else msgspec.json.encode(obj)
    parsed = Parse(raw, cls())
    assert missing_required(parsed) == []
    return MessageToDict(parsed)


def missing_required(m: Any, path: str = "") -> list[str]:
    """The fields of a parsed message (and of the messages in it) that the official
    proto marks `(google.api.field_behavior) = REQUIRED` but are unset."""
    out: list[str] = []
    for f in m.DESCRIPTOR.fields:
        required = (
            field_behavior_pb2.REQUIRED
            in f.GetOptions().Extensions[field_behavior_pb2.field_behavior]
        )
        name = path + f.json_name
        value = getattr(m, f.name)
        if f.is_repeated:
            if required and len(value) == 0:
                out.append(name)
            if f.message_type is not None and not f.message_type.GetOptions().map_entry:
                for i, item in enumerate(value):
                    out += missing_required(item, f"{name}[{i}].")
        elif f.message_type is not None:
            if m.HasField(f.name):
                out += missing_required(value, name + ".")
            elif required:
                out.append(name)
        elif required and value in ("", 0):
            out.append(name)
    return out


async def test_send_returns_the_finished_task_in_the_official_shape(
    nats_url: str, nc: Client, settings: KitSettings
) -> None:
    svc = await started(settings, nats_url)
    client = A2AClient(nc, AGENT, tenant="acme", timeout_s=10)
    try:
        task = await client.send("hello")
        assert task.status.state == TaskState.COMPLETED
        assert [p.text for p in task.artifacts[0].parts] == ["HELLO", "!"]
        assert task.history[0].parts[0].text == "hello"
        assert task.history[-1].parts[0].text == "echoed hello"
        parsed = sdk_parse(task, sdk.Task)
        assert parsed["status"]["state"] == "TASK_STATE_COMPLETED"
        assert parsed["history"][0]["role"] == "ROLE_USER"
        assert parsed == msgspec.json.decode(msgspec.json.encode(task))

        raw = await client.call_raw(client._request("SendMessage", client._params("x")))
        sdk_parse(json.dumps(raw["result"]), sdk.SendMessageResponse)

        got = await client.get(task.id, history_length=1)
        assert got.id == task.id and len(got.history) == 1
        card_json = (await nc.request(subjects.a2a_card(AGENT), b"", timeout=5)).data
        parsed_card = sdk_parse(card_json, sdk.AgentCard)
        assert parsed_card["supportedInterfaces"][0]["url"].endswith("/a2a.toyagent.rpc")
    finally:
        await svc.stop()


async def test_stream_sends_every_event_in_order_then_the_end_marker(
    nats_url: str, nc: Client, settings: KitSettings
) -> None:
    svc = await started(settings, nats_url)
    client = A2AClient(nc, AGENT, timeout_s=10)
    side = await nc.subscribe("a2a.toyagent.tasks.*")
    try:
        envelopes = [
            e async for e in client.stream_raw("SendStreamingMessage", client._params("hi"))
        ]
        kinds = [next(iter(e["result"])) for e in envelopes]
        assert kinds == ["task", "statusUpdate", "artifactUpdate", "artifactUpdate", "statusUpdate"]
        for env in envelopes:
            sdk_parse(json.dumps(env["result"]), sdk.StreamResponse)
        assert envelopes[-1]["result"]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"
        task_id = envelopes[0]["result"]["task"]["id"]
        published = [
            msgspec.json.decode((await side.next_msg(5)).data, type=StreamResponse)
            for _ in range(4)
        ]
        assert published[-1].status_update is not None
        assert published[-1].status_update.task_id == task_id
    finally:
        await side.unsubscribe()
        await svc.stop()


async def test_tasks_survive_a_restart_and_cancel_stops_a_running_task(
    nats_url: str, nc: Client, settings: KitSettings
) -> None:
    svc = await started(settings, nats_url)
    client = A2AClient(nc, AGENT, tenant="acme", timeout_s=10)
    try:
        done = await client.send("persist me")
        slow = await client.send("slow", return_immediately=True)
        await asyncio.wait_for(svc.executor.started.wait(), 5)
        canceled = await client.cancel(slow.id)
        assert canceled.status.state == TaskState.CANCELED
        with pytest.raises(A2AError) as again:
            await client.cancel(slow.id)
        assert again.value.code == -32002
    finally:
        await svc.stop()
    svc = await started(settings, nats_url)
    try:
        task = await client.get(done.id)
        assert task.status.state == TaskState.COMPLETED
        listed = await client.list(pageSize=10)
        assert {t.id for t in listed.tasks} == {done.id, slow.id}
        with pytest.raises(A2AError) as other:
            await A2AClient(nc, AGENT, tenant="intruder", timeout_s=5).get(done.id)
        assert other.value.code == -32001
    finally:
        await svc.stop()


async def test_a_blocking_call_that_times_out_hands_out_a_task_that_is_stored(
    nats_url: str, nc: Client, settings: KitSettings
) -> None:
    # A blocking call's task is stored when it ends; one that outlives the blocking
    # timeout is answered as it is, and must then be readable from any process.
    svc = await started(settings, nats_url, blocking_timeout_s=0.3, progress_write_s=60.0)
    client = A2AClient(nc, AGENT, tenant="acme", timeout_s=10)
    try:
        running = await client.send("slow")
        assert running.status.state == TaskState.WORKING
        assert svc.a2a is not None
        stored = await svc.a2a.store.get(running.id, "acme")  # what another process reads
        assert stored is not None and stored.status.state == TaskState.WORKING
        quick = await client.send("quick")
        assert await svc.a2a.store.get(quick.id, "acme") == quick
    finally:
        await svc.stop()


async def test_bad_requests_get_the_spec_error_codes(
    nats_url: str, nc: Client, settings: KitSettings
) -> None:
    svc = await started(settings, nats_url)
    client = A2AClient(nc, AGENT, timeout_s=10)
    try:
        cases = {
            b"{not json": -32700,
            b"[1, 2]": -32600,
            b'{"jsonrpc": "2.0", "id": 1, "method": "tasks/explode"}': -32601,
            # The spec's methods these agents do not offer get the spec's own errors.
            b'{"jsonrpc": "2.0", "id": 6, "method": "CreateTaskPushNotificationConfig"}': -32003,
            b'{"jsonrpc": "2.0", "id": 7, "method": "GetExtendedAgentCard"}': -32007,
            # An answer in text is all this agent gives; a caller taking only images is told.
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 8,
                    "method": "SendMessage",
                    "params": {
                        "message": {
                            "messageId": "m8",
                            "role": "ROLE_USER",
                            "parts": [{"text": "x"}],
                        },
                        "configuration": {"acceptedOutputModes": ["image/png"]},
                    },
                }
            ).encode(): -32005,
            b'{"jsonrpc": "2.0", "id": 2, "method": "SendMessage", "params": {}}': -32602,
            b'{"jsonrpc": "2.0", "id": 3, "method": "GetTask", "params": {"id": 5}}': -32602,
            b'{"jsonrpc": "2.0", "id": 4, "method": "GetTask", "params": {"id": "nope"}}': -32001,
            # A string that is not UTF-8 is not valid JSON (RFC 8259 section 8.1).
            b'{"jsonrpc": "2.0", "id": 5, "method": "GetTask", "params": {"id": "\xff\xfe"}}': (
                -32700
            ),
        }
        for raw, code in cases.items():
            answer = await client.call_raw(raw)
            assert answer["error"]["code"] == code, raw
            assert answer["jsonrpc"] == "2.0"
        text_ok = {
            "jsonrpc": "2.0",
            "id": 9,
            "method": "SendMessage",
            "params": {
                "message": {"messageId": "m9", "role": "ROLE_USER", "parts": [{"text": "x"}]},
                "configuration": {"acceptedOutputModes": ["image/png", "text/*"]},
            },
        }
        answer = await client.call_raw(json.dumps(text_ok).encode())
        assert answer["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED", answer
        # A stream refused for its params still ends: the caller reads the error, then
        # the end marker, and is not left waiting for its timeout.
        refused = [e async for e in client.stream_raw("SendStreamingMessage", {})]
        assert [e["error"]["code"] for e in refused] == [-32602]
        failed = await client.send("boom")
        assert failed.status.state == TaskState.FAILED
        assert "the toy broke" in (failed.status.message.parts[0].text or "")
    finally:
        await svc.stop()


async def test_the_agent_serves_exactly_the_contracts_methods(
    nats_url: str, nc: Client, settings: KitSettings
) -> None:
    """Every method of the contract is routed (a missing task, not a missing method), and
    an unknown method's error lists the contract's methods, streaming ones included."""
    svc = await started(settings, nats_url)
    client = A2AClient(nc, AGENT, timeout_s=10)
    try:
        for method in ("GetTask", "CancelTask"):
            raw = msgspec.json.encode(
                {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"id": "nope"}}
            )
            assert (await client.call_raw(raw))["error"]["code"] == -32001, method
        with pytest.raises(A2AError) as missing:
            async for _ in client.subscribe("nope"):
                pass
        assert missing.value.code == -32001
        listed = await client.list()
        assert listed.tasks == []
        unknown = await client.call_raw(b'{"jsonrpc": "2.0", "id": 9, "method": "Explode"}')
        assert unknown["error"]["message"].endswith("serves " + ", ".join(METHODS))
    finally:
        await svc.stop()


async def test_v03_names_and_input_required_continuation(
    nats_url: str, nc: Client, settings: KitSettings
) -> None:
    svc = await started(settings, nats_url)
    client = A2AClient(nc, AGENT, timeout_s=10)
    try:
        legacy = {
            "message": {
                "kind": "message",
                "messageId": "m-1",
                "role": "user",
                "parts": [{"kind": "text", "text": "ask"}],
            }
        }
        waiting = (await client.call("message/send", legacy))["task"]
        assert waiting["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"
        follow = client.user_message("pool llm", task_id=waiting["id"])
        task = await client.send(follow)
        assert task.id == waiting["id"]
        assert task.status.state == TaskState.COMPLETED
        with pytest.raises(A2AError) as closed:
            await client.send(client.user_message("more", task_id=task.id))
        assert closed.value.code == -32004
    finally:
        await svc.stop()


async def test_tenants_are_held_to_their_rate_limit_and_task_quota(
    nats_url: str, nc: Client, settings: KitSettings
) -> None:
    svc = await started(settings, nats_url, rate_limit_per_min=5, max_concurrent_tasks=1)
    busy = A2AClient(nc, AGENT, tenant="busy", timeout_s=10)
    try:
        slow = await busy.send("slow", return_immediately=True)
        with pytest.raises(A2AError) as quota:
            await busy.send("another", return_immediately=True)
        assert quota.value.code == -32030 and "quota" in quota.value.message
        await busy.cancel(slow.id)
        with pytest.raises(A2AError) as limited:
            for _ in range(5):
                await busy.get(slow.id)
        assert limited.value.code == -32029
        assert limited.value.data["limitPerMin"] == 5
        other = A2AClient(nc, AGENT, tenant="calm", timeout_s=10)
        assert (await other.send("fine")).status.state == TaskState.COMPLETED
    finally:
        await svc.stop()
