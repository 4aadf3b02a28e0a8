"""Hosted agents as a runtime resource: `fleet agents create` makes an agent with its own
prompt that answers over A2A within 10 s, counts against its user's quota, and is gone
after `fleet agents delete`; the per-user agent quota holds across two gateways and the
per-tenant session quota across three runner processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client
from nats.errors import NoRespondersError

from contracts.a2a import QUOTA_EXCEEDED, RATE_LIMITED, Message, Role, TaskState, text_part
from contracts.api.replies import AgentsReply
from contracts.api.tools import unknown_tools
from services.a2a.client import A2AClient, A2AError
from services.gateway.service import Gateway, GatewaySettings
from services.kit.config import load_settings
from services.runner.ratelimit import grant, window_of
from services.runner.service import RunnerService
from services.runner.settings import RunnerSettings
from tests.fakes.anthropic_api import FakeAnthropic, text

FLEET = [sys.executable, "-m", "tools"]
PROMPT = "You are Haiku Helper. Answer every question as a haiku."
QUOTA = 3
RATE = 6


def fleet(nats_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLEET, "agents", *args, "--nats", nats_url],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
async def plane(
    nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FakeAnthropic]:
    """Two gateways (quota 3 agents per user) and three runners serving runtime agents,
    with Claude played by the fake Messages API."""
    with FakeAnthropic([[text("Queues drain at dusk / the budget holds")]], repeat_last=True) as f:
        monkeypatch.setenv("ANTHROPIC_API_KEY", f.api_key)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", f.url)
        services: list[Any] = []
        for i in range(2):
            overrides = {
                "store": {"dir": str(tmp_path / f"gw{i}")},
                "gateway": {"agents_per_user": QUOTA},
            }
            services.append(
                Gateway(
                    load_settings(GatewaySettings, env={}, overrides=overrides), nats_url=nats_url
                )
            )
        for i in range(3):
            overrides = {
                "store": {"dir": str(tmp_path / f"runner{i}")},
                "stop_deadline_s": 1.0,
                "runner": {
                    "agents": [],
                    "unit": f"runner-{i}",
                    "sim_latency_s": 0.05,
                    "tenant_max_sessions": 2,
                    "tenant_rate_limit_per_min": RATE,
                    "tenant_rate_chunk": 1,
                },
            }
            services.append(
                RunnerService(
                    load_settings(RunnerSettings, env={}, overrides=overrides), nats_url=nats_url
                )
            )
        for svc in services:
            await svc.start()
        try:
            yield f
        finally:
            for svc in reversed(services):
                await svc.stop()
            await asyncio.sleep(0)


async def served(nc: Client, agent: str) -> None:
    """Return once a runner answers for `agent` (they pick a new agent up from KV)."""
    for _ in range(100):
        try:
            await A2AClient(nc, agent, timeout_s=1).card()
            return
        except Exception:  # no responders yet
            await asyncio.sleep(0.1)  # bounded by the loop: 10 s at most
    raise AssertionError(f"no runner serves {agent}")


async def agents_of(nc: Client, user: str) -> AgentsReply:
    reply = await nc.request("fleet.api.agents.list", msgspec.json.encode({"user": user}), 5)
    return msgspec.json.decode(reply.data, type=AgentsReply)


async def test_fleet_agents_create_answers_over_a2a_counts_and_is_gone_after_delete(
    nats_url: str, nc: Client, plane: FakeAnthropic
) -> None:
    made = await asyncio.to_thread(
        fleet, nats_url, "create", "haiku", "--prompt", PROMPT, "--model", "claude-test",
        "--tool", "get_gpu_stats", "--cores", "2", "--memory-mb", "2048", "--user", "alice",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "created agents.haiku" in made.stdout and "1 of 3 agents used by alice" in made.stdout
    started = time.monotonic()  # from the moment the agent exists

    task = await A2AClient(nc, "agents.haiku", tenant="alice", timeout_s=10).send("How is it?")
    assert time.monotonic() - started < 10.0
    assert task.status.state == TaskState.COMPLETED
    said = "".join(p.text or "" for a in task.artifacts for p in a.parts)
    assert "Queues drain at dusk" in said
    # Its own prompt and model reached Claude.
    assert plane.requests[-1]["system"] == PROMPT
    assert plane.requests[-1]["model"] == "claude-test"

    mine = await agents_of(nc, "alice")
    assert [(a.name, a.cores, a.memory_mb, a.tools) for a in mine.agents] == [
        ("haiku", 2, 2048, ["get_gpu_stats"])
    ]
    assert (mine.used, mine.quota) == (1, QUOTA)

    gone = await asyncio.to_thread(fleet, nats_url, "delete", "haiku", "--user", "alice")
    assert gone.returncode == 0, gone.stderr
    assert (await agents_of(nc, "alice")).used == 0
    with pytest.raises((A2AError, NoRespondersError)):  # no runner serves it any more
        await A2AClient(nc, "agents.haiku", tenant="alice", timeout_s=3).send("still there?")

    # Bad input changes nothing: an unknown tool, someone else's delete.
    bad = await asyncio.to_thread(
        fleet, nats_url, "create", "x1", "--prompt", "p", "--tool", "rm_rf", "--user", "alice"
    )
    assert bad.returncode == 1 and "rm_rf" in bad.stderr
    assert (await agents_of(nc, "alice")).agents == []


async def test_the_agent_quota_holds_across_gateways_and_sessions_across_runners(
    nats_url: str, nc: Client, plane: FakeAnthropic
) -> None:
    async def create(name: str) -> dict[str, Any]:
        body = {"name": name, "user": "bob", "system_prompt": f"I am {name}.", "model": "sim"}
        reply = await nc.request("fleet.api.agents.create", msgspec.json.encode(body), 10)
        answer: dict[str, Any] = msgspec.json.decode(reply.data)
        return answer

    answers = await asyncio.gather(*(create(f"bob-{i}") for i in range(6)))
    made = [a for a in answers if "agents" in a]
    refused = [a["error"] for a in answers if "error" in a]
    assert len(made) == QUOTA and len(refused) == 6 - QUOTA
    assert all(e["code"] == 429 and "quota is 3" in e["message"] for e in refused)
    listed = await agents_of(nc, "bob")
    assert listed.used == QUOTA and len(listed.agents) == QUOTA

    # The tenant session quota (2) holds whichever of the three runners answers.
    name = listed.agents[0].name
    client = A2AClient(nc, f"agents.{name}", tenant="t1", timeout_s=10)
    for i in range(2):
        message = Message(
            message_id=f"m{i}", role=Role.USER, parts=[text_part("hi")], context_id=f"c{i}"
        )
        assert (await client.send(message)).status.state == TaskState.COMPLETED
    third = Message(message_id="m3", role=Role.USER, parts=[text_part("hi")], context_id="c3")
    with pytest.raises(A2AError) as refused_session:
        await client.send(third)
    assert refused_session.value.code == QUOTA_EXCEEDED


async def test_the_tenant_rate_limit_holds_across_three_runners(
    nats_url: str, nc: Client, plane: FakeAnthropic
) -> None:
    body = {"name": "counted", "user": "carol", "system_prompt": "I count.", "model": "sim"}
    await nc.request("fleet.api.agents.create", msgspec.json.encode(body), 10)
    client = A2AClient(nc, "agents.counted", tenant="t2", timeout_s=10)
    await served(nc, "agents.counted")
    began = window_of(time.time())
    codes = []
    for i in range(RATE + 3):
        message = Message(
            message_id=f"r{i}", role=Role.USER, parts=[text_part("hi")], context_id="c"
        )
        try:
            await client.send(message)
            codes.append(0)
        except A2AError as exc:
            codes.append(exc.code)
    if window_of(time.time()) == began:  # a minute boundary resets the window
        assert codes == [0] * RATE + [RATE_LIMITED] * 3
    else:
        assert codes.count(0) <= 2 * RATE


def test_a_grant_never_takes_the_window_past_the_limit() -> None:
    assert grant(0, 100, 5) == 5
    assert grant(97, 100, 5) == 3
    assert grant(100, 100, 5) == 0 and grant(140, 100, 5) == 0
    assert unknown_tools(["get_gpu_stats", "rm_rf", "create_agent"]) == ["create_agent", "rm_rf"]


async def test_an_agent_no_runner_can_serve_is_refused_with_why_and_a_served_name_is_taken(
    nats_url: str, nc: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runners without an Anthropic key, serving the configured agent `assistant`: a
    Claude agent is refused with the runner's reason and its quota handed back, not left
    listed and silent; `assistant` cannot be created over the configured one."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    gateway = Gateway(
        load_settings(GatewaySettings, env={}, overrides={"store": {"dir": str(tmp_path / "g")}}),
        nats_url=nats_url,
    )
    overrides = {
        "store": {"dir": str(tmp_path / "r")},
        "stop_deadline_s": 1.0,
        "runner": {"agents": ["assistant"], "unit": "runner-nokey", "sim_latency_s": 0.05},
    }
    runner = RunnerService(
        load_settings(RunnerSettings, env={}, overrides=overrides), nats_url=nats_url
    )
    for svc in (gateway, runner):
        await svc.start()

    async def create(name: str, model: str) -> dict[str, Any]:
        body = {"name": name, "user": "dave", "system_prompt": "Be brief.", "model": model}
        reply = await nc.request("fleet.api.agents.create", msgspec.json.encode(body), 30)
        answer: dict[str, Any] = msgspec.json.decode(reply.data)
        return answer

    try:
        claude = await create("claudeonly", "claude-sonnet-4-5")
        assert claude["error"]["code"] == 503, claude
        assert "ANTHROPIC_API_KEY" in claude["error"]["message"]
        assert "runner-nokey" in claude["error"]["message"]

        taken = await create("assistant", "sim")
        assert taken["error"]["code"] == 409 and "[runner] agents" in taken["error"]["message"]
        assert (await agents_of(nc, "dave")).agents == []

        # One it can serve answers as soon as the create does.
        made = await create("simmy", "sim")
        assert [a["name"] for a in made["agents"]] == ["simmy"], made
        assert (await A2AClient(nc, "agents.simmy", timeout_s=2).card()).name
        assert (await agents_of(nc, "dave")).used == 1
        # Every user's agents: no one user's count to give.
        everyone = msgspec.json.decode((await nc.request("fleet.api.agents.list", b"{}", 5)).data)
        assert [a["name"] for a in everyone["agents"]] == ["simmy"] and everyone["used"] is None
    finally:
        for svc in (runner, gateway):
            await svc.stop()
