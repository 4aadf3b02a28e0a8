"""Hosted agents use the fleet tools their owner gave them, and only those: the real
anthropic client against the fake Messages API plays Claude's tool calls, the real
gateway and cost-guard answer them over fleet.api (stand-ins only for the provisioner's
answers), and a call outside the agent's subset is refused and audited."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from contracts import subjects
from contracts.a2a import TaskState
from contracts.commands import ProvisionRequest, Verdict
from contracts.events import AuditRecord
from services.a2a.client import A2AClient
from services.costguard.service import CostGuard
from services.costguard.settings import CostguardSettings
from services.gateway.service import Gateway, GatewaySettings
from services.kit import ConfigError
from services.kit.config import load_settings
from services.kit.service import Service
from services.runner.service import RunnerService
from services.runner.settings import RunnerSettings
from tests.fakes.anthropic_api import text, tool
from tests.fakes.fleet_api import FakeFleetOwners
from tests.fleet_helpers import kit
from tests.provisioner_helpers import Watch
from tests.signing_helpers import signing
from tests.test_brain import claude  # noqa: F401  (the fixture)
from tests.test_runtime_agents import served

POOLS = {"h100": {"gpu_model": "H100", "providers": ["sim"], "max_usd_per_hour": 10}}


class Plane:
    """Gateway, cost-guard and runner, with what crosses the wire watched."""

    def __init__(self) -> None:
        self.verdicts: Watch = Watch(Verdict)
        self.audits: Watch = Watch(AuditRecord)

    def audited(self, actor: str) -> list[AuditRecord]:
        return [a for a in self.audits.items if a.actor == actor]


def runner_settings(tmp_path: Path, **runner: Any) -> RunnerSettings:
    section = {"agents": [], "unit": "tools1", "sim_latency_s": 0.0, **runner}
    return load_settings(RunnerSettings, env={}, overrides=kit(tmp_path, "runner", runner=section))


@pytest.fixture
async def plane(nats_url: str, nc: Client, tmp_path: Path) -> AsyncIterator[Plane]:
    owners = await FakeFleetOwners(nc, judge=False).start()
    budget = {"daily_usd": 5000, "approval_threshold_usd_per_hour": 100}
    services: list[Service[Any]] = [
        CostGuard(
            load_settings(
                CostguardSettings,
                env={},
                overrides=kit(
                    tmp_path, "guard", budget=budget, pools=POOLS, signing=signing("costguard")
                ),
            ),
            nats_url=nats_url,
        ),
        Gateway(
            load_settings(GatewaySettings, env={}, overrides=kit(tmp_path, "gw", pools=POOLS)),
            nats_url=nats_url,
        ),
    ]
    p = Plane()
    await p.verdicts.start(nc, "fleet.budget.*")
    await p.audits.start(nc, subjects.AUDIT_ALL)
    for svc in services:
        await svc.start()
    try:
        yield p
    finally:
        for svc in reversed(services):
            await svc.stop()
        for w in (p.verdicts, p.audits):
            await w.stop()
        await owners.stop()
        await asyncio.sleep(0)


async def test_a_hosted_agent_calls_its_own_tools_and_a_call_outside_them_is_refused(
    nats_url: str,
    nc: Client,
    tmp_path: Path,
    plane: Plane,
    claude: Any,  # noqa: F811
) -> None:
    fake = claude(
        [
            [
                text("I look at the pools first."),
                tool("get_gpu_stats", {}),
                tool("destroy_gpu_instance", {"provider": "sim", "instance_id": "sim-1"}),
            ],
            [text("One H100 for the job."), tool("provision_gpu", {"gpu_model": "H100"})],
            [text("Done: one H100 is approved; destroying instances is not mine to do.")],
        ]
    )
    runner = RunnerService(runner_settings(tmp_path), nats_url=nats_url)
    await runner.start()
    try:
        create = {
            "name": "ops-helper",
            "user": "dana",
            "system_prompt": "You help with GPU capacity.",
            "model": "claude-test",
            "tools": ["provision_gpu", "get_gpu_stats"],
        }
        reply = await nc.request("fleet.api.agents.create", msgspec.json.encode(create), 10)
        assert "error" not in json.loads(reply.data)
        await served(nc, "agents.ops-helper")
        client = A2AClient(nc, "agents.ops-helper", tenant="dana", timeout_s=30)
        events = [e async for e in client.stream(client.user_message("Get me an H100."))]
    finally:
        await runner.stop()

    # Claude was shown its two tools, with the guide's names and generated schemas.
    shown = [t["name"] for t in fake.requests[0]["tools"]]
    assert shown == ["get_gpu_stats", "provision_gpu"]
    assert "gpu_model" in fake.requests[0]["tools"][1]["input_schema"]["properties"]

    # What Claude was told of each call: stats answered, the destroy refused with the
    # reason, the provision answered with the cost-guard's verdict.
    stats, destroy, provision = fake.tool_results()
    assert not stats["is_error"] and "pools" in json.loads(stats["content"])
    assert destroy["is_error"]
    assert "'destroy_gpu_instance' is not one of this agent's tools" in destroy["content"]
    assert "get_gpu_stats, provision_gpu" in destroy["content"]
    answer = json.loads(provision["content"])
    assert not provision["is_error"] and answer["decision"] == "approved"

    # The money passed the cost-guard, as the agent's own requester; nothing was released.
    verdicts = await plane.verdicts.until(lambda v: len(v) >= 1)
    assert [(type(v.request).__name__, v.decision) for v in verdicts] == [
        ("ProvisionRequest", "approved")
    ]
    request = verdicts[0].request
    assert isinstance(request, ProvisionRequest)
    assert request.requester == "agent-ops-helper" and request.gpu_model == "H100"

    # Every call is audited under the agent's name, the refused one too.
    records = await plane.audits.until(lambda a: len(plane.audited("agent-ops-helper")) >= 3)
    mine = [a for a in records if a.actor == "agent-ops-helper"]
    assert [a.action for a in mine] == [
        "get_gpu_stats",
        "refused.destroy_gpu_instance",
        "provision_gpu",
    ]
    task_id = events[-1].status_update.task_id if events[-1].status_update else ""
    assert all(a.refs == {"task": task_id, "agent": "agents.ops-helper"} for a in mine)
    assert mine[0].reasoning == "I look at the pools first."
    assert mine[1].cost_impact_usd_per_hour == 0.0 and mine[2].cost_impact_usd_per_hour == 4.0

    # The caller sees each call as it happens, then the answer.
    working = [
        e.status_update.status.message.parts[0].text
        for e in events
        if e.status_update
        and e.status_update.status.state == TaskState.WORKING
        and e.status_update.status.message
    ]
    assert working == [
        "called get_gpu_stats",
        "refused destroy_gpu_instance",
        "called provision_gpu",
    ]
    final = events[-1].status_update
    assert final is not None and final.status.state == TaskState.COMPLETED
    said = "".join(
        p.text or "" for e in events if e.artifact_update for p in e.artifact_update.artifact.parts
    )
    assert said.endswith("destroying instances is not mine to do.")


async def test_a_model_that_keeps_calling_tools_is_stopped_after_max_tool_steps(
    nats_url: str,
    nc: Client,
    tmp_path: Path,
    plane: Plane,
    claude: Any,  # noqa: F811
) -> None:
    fake = claude([[text("Again."), tool("get_gpu_stats", {})]], repeat_last=True)
    settings = runner_settings(
        tmp_path,
        agents=["looper"],
        model="anthropic",
        anthropic_model="claude-test",
        tools=["get_gpu_stats"],
        max_tool_steps=3,
    )
    runner = RunnerService(settings, nats_url=nats_url)
    await runner.start()
    try:
        task = await A2AClient(nc, "agents.looper", tenant="t", timeout_s=30).send("loop")
    finally:
        await runner.stop()
    assert task.status.state == TaskState.COMPLETED
    assert len(fake.requests) == 3
    # The third answer's call is not carried out: Claude could not see its result.
    assert [a.action for a in plane.audited("agent-looper")] == ["get_gpu_stats"] * 2
    said = "".join(p.text or "" for a in task.artifacts for p in a.parts)
    assert "after 3 model calls" in said and "runner.max_tool_steps" in said


def test_a_runner_configured_with_an_unknown_tool_does_not_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        RunnerService(runner_settings(tmp_path, tools=["get_gpu_stats", "rm_rf"]))
    assert "runner.tools: unknown tool(s) rm_rf; allowed:" in str(refused.value)
    assert "create_agent" not in str(refused.value)
