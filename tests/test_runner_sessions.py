"""Hosted agents keep their sessions in JetStream: any runner continues any conversation,
tenants are held to their session quota and request rate, and answers are the A2A shape."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from contracts import subjects
from contracts.a2a import QUOTA_EXCEEDED, RATE_LIMITED, TaskState
from contracts.telemetry import UnitTelemetry
from services.a2a.client import A2AClient, A2AError
from services.kit.config import load_settings
from services.runner.service import RunnerService
from services.runner.settings import RunnerSettings

AGENT = subjects.hosted_agent("assistant")


def runner(nats_url: str, tmp_path: Path, unit: str, **runner: Any) -> RunnerService:
    section = {"model": "sim", "sim_latency_s": 0.0, "unit": unit, **runner}
    settings = load_settings(
        RunnerSettings,
        env={},
        overrides={"store": {"dir": str(tmp_path)}, "stop_deadline_s": 2.0, "runner": section},
    )
    return RunnerService(settings, nats_url=nats_url)


def answer(task: Any) -> str:
    return "".join(p.text or "" for p in task.artifacts[0].parts)


def final_data(task: Any) -> dict[str, Any]:
    parts = task.status.message.parts
    return next(p.data for p in parts if p.data is not None)


async def test_a_session_continues_on_another_runner_with_its_history(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    first = runner(nats_url, tmp_path, "r1")
    await first.start()
    second = runner(nats_url, tmp_path, "r2")
    client = A2AClient(nc, AGENT, tenant="acme", timeout_s=10)
    try:
        one = await client.send(client.user_message("my name is Ada", context_id="ctx-1"))
        assert one.status.state == TaskState.COMPLETED
        assert answer(one).startswith("[sim] turn 1")
        assert final_data(one)["runner"] == first.runner_id
        await second.start()
        await first.stop()
        two = await client.send(client.user_message("what is my name?", context_id="ctx-1"))
        assert two.status.state == TaskState.COMPLETED
        assert final_data(two)["runner"] == second.runner_id
        assert final_data(two)["turn"] == 2
        assert 'Earlier you said: "my name is Ada"' in answer(two)
        assert two.context_id == "ctx-1"
        # The first task is readable through the runner that did not run it.
        got = await client.get(one.id)
        assert got.status.state == TaskState.COMPLETED
        # Another tenant using the same context id starts its own conversation.
        other = A2AClient(nc, AGENT, tenant="globex", timeout_s=10)
        fresh = await other.send(other.user_message("hello", context_id="ctx-1"))
        assert final_data(fresh)["turn"] == 1
    finally:
        await first.stop()
        await second.stop()


async def test_a_tenant_over_its_session_quota_gets_a_json_rpc_error(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    svc = runner(nats_url, tmp_path, "q1", tenant_max_sessions=2)
    await svc.start()
    client = A2AClient(nc, AGENT, tenant="small", timeout_s=10)
    try:
        await client.send(client.user_message("a", context_id="c1"))
        await client.send(client.user_message("b", context_id="c2"))
        with pytest.raises(A2AError) as refused:
            await client.send(client.user_message("c", context_id="c3"))
        assert refused.value.code == QUOTA_EXCEEDED
        assert "2 live sessions" in refused.value.message
        assert refused.value.data["maxSessions"] == 2
        # An existing session still takes messages; other tenants are not affected.
        again = await client.send(client.user_message("a again", context_id="c1"))
        assert again.status.state == TaskState.COMPLETED
        other = A2AClient(nc, AGENT, tenant="big", timeout_s=10)
        assert (await other.send("hi")).status.state == TaskState.COMPLETED
        # A refused stream gets the error, then its end marker.
        envelopes = [
            e async for e in client.stream_raw("SendStreamingMessage", client._params("d"))
        ]
        assert [e["error"]["code"] for e in envelopes] == [QUOTA_EXCEEDED]
    finally:
        await svc.stop()


async def test_a_tenant_over_its_rate_limit_gets_a_json_rpc_error(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    svc = runner(nats_url, tmp_path, "rl1", tenant_rate_limit_per_min=3)
    await svc.start()
    client = A2AClient(nc, AGENT, tenant="chatty", timeout_s=10)
    try:
        for i in range(3):
            await client.send(client.user_message(f"m{i}", context_id="c"))
        with pytest.raises(A2AError) as refused:
            await client.send(client.user_message("one too many", context_id="c"))
        assert refused.value.code == RATE_LIMITED
        assert "more than 3 requests" in refused.value.message
        other = A2AClient(nc, AGENT, tenant="calm", timeout_s=10)
        assert (await other.send("hi")).status.state == TaskState.COMPLETED
    finally:
        await svc.stop()


async def test_streaming_answers_arrive_as_artifact_chunks_and_telemetry_shows_the_load(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    svc = runner(nats_url, tmp_path, "s1", sim_latency_s=1.5, sim_chunks=3, max_sessions=2)
    await svc.start()
    beats = await nc.subscribe(subjects.telemetry(subjects.agent_pool("assistant"), "s1"))
    client = A2AClient(nc, AGENT, tenant="acme", timeout_s=10)
    try:
        events = [e async for e in client.stream("tell me a story")]
        kinds = ["task" if e.task else "status" if e.status_update else "artifact" for e in events]
        assert kinds == ["task", "status", "artifact", "artifact", "artifact", "status"]
        chunks = [e.artifact_update for e in events if e.artifact_update]
        assert [c.append for c in chunks] == [False, True, True]
        assert [c.last_chunk for c in chunks] == [False, False, True]
        assert events[-1].status_update.status.state == TaskState.COMPLETED

        slow = [asyncio.create_task(client.send(f"q{i}")) for i in range(4)]
        busy = None
        async with asyncio.timeout(5):
            while busy is None or busy.queue_depth == 0:
                busy = msgspec.json.decode((await beats.next_msg(5)).data, type=UnitTelemetry)
        assert busy.capacity == 2 and busy.inflight == 2 and busy.utilization == 1.0
        assert all(t.status.state == TaskState.COMPLETED for t in await asyncio.gather(*slow))
    finally:
        await beats.unsubscribe()
        await svc.stop()
