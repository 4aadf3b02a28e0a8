"""A hosted agent's own runner, sized to it (`[gateway] agent_runtime`): on Hypercore a
microVM of the agent's cores and memory (against the Hypercore node fake, built from
hypercore's source), on `local` a runner process that serves only that agent. The
gateway asks for it through the real cost-guard and the real provisioner; a size no
node can take is a clear error and leaves no agent behind."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from contracts import subjects
from contracts.a2a import TaskState
from contracts.api.replies import AgentsReply
from contracts.commands import ProvisionRequest, ReleaseRequest, Verdict
from contracts.events import UnitEvent
from contracts.telemetry import PoolMetrics
from services.a2a.client import A2AClient
from services.costguard.service import CostGuard
from services.costguard.settings import CostguardSettings
from services.gateway.service import Gateway, GatewaySettings
from services.kit.config import load_settings
from services.kit.service import Service
from services.provisioner.service import ProvisionerService
from services.runner.service import RunnerService
from services.runner.settings import RunnerSettings
from services.scaler.policy import Policy, PoolState, decide
from services.scaler.service import Scaler, ScalerSettings
from tests.fakes import HypercoreFake
from tests.fleet_helpers import kit
from tests.provisioner_helpers import Watch, eventually, settings, states
from tests.signing_helpers import signing
from tests.test_provisioner_local import alive
from tests.test_runtime_agents import agents_of

BUDGET = {"daily_usd": 500, "approval_threshold_usd_per_hour": 10}


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch) -> Iterator[HypercoreFake]:
    with HypercoreFake() as fake:
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)
        yield fake


class Plane:
    """Provisioner, cost-guard and gateway, with verdicts and unit events watched."""

    def __init__(self, services: list[Service[Any]]) -> None:
        self.services = services
        self.verdicts: Watch = Watch(Verdict)
        self.units: Watch = Watch(UnitEvent)

    @property
    def provisioner(self) -> ProvisionerService:
        found = self.services[0]
        assert isinstance(found, ProvisionerService)
        return found


async def start_plane(
    nats_url: str, nc: Client, tmp_path: Path, runtime: str, providers: dict[str, Any]
) -> Plane:
    gateway = {"agent_runtime": runtime, "agent_start_timeout_s": 30.0}
    plane = Plane(
        [
            ProvisionerService(settings(tmp_path / "prov", {}, providers), nats_url=nats_url),
            CostGuard(
                load_settings(
                    CostguardSettings,
                    env={},
                    overrides=kit(tmp_path, "guard", budget=BUDGET, signing=signing("costguard")),
                ),
                nats_url=nats_url,
            ),
            Gateway(
                load_settings(
                    GatewaySettings, env={}, overrides=kit(tmp_path, "gw", gateway=gateway)
                ),
                nats_url=nats_url,
            ),
        ]
    )
    await plane.verdicts.start(nc, "fleet.budget.*")
    await plane.units.start(nc, subjects.UNIT_ALL)
    for svc in plane.services:
        await svc.start()
    return plane


async def stop_plane(plane: Plane) -> None:
    for svc in reversed(plane.services):
        await svc.stop()
    for w in (plane.verdicts, plane.units):
        await w.stop()
    await asyncio.sleep(0)


@pytest.fixture
async def hypercore(
    nats_url: str, nc: Client, tmp_path: Path, node: HypercoreFake
) -> AsyncIterator[Plane]:
    section = {"usd_per_core_hour": 0.05, "env": {"FLEET_NATS_URL": "nats://10.0.0.1:4222"}}
    plane = await start_plane(nats_url, nc, tmp_path, "hypercore", {"hypercore": section})
    try:
        yield plane
    finally:
        await stop_plane(plane)


async def call(nc: Client, op: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = await nc.request(f"fleet.api.{op}", msgspec.json.encode(body), timeout=40)
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


async def settled_spawns(node: HypercoreFake, count: int) -> list[dict[str, Any]]:
    """The first `count` spawn bodies, once the node has them; then its state broadcast,
    so `/list` shows the microVMs as running."""
    await eventually(lambda: len([r for r in node.requests if r.path == "/spawn"]) >= count)
    node.settle()
    return [r.body for r in node.requests if r.path == "/spawn"][:count]


async def test_on_hypercore_an_agents_runner_is_a_microvm_of_its_cores_and_memory(
    nc: Client, node: HypercoreFake, hypercore: Plane
) -> None:
    create = {
        "name": "analyst",
        "user": "erin",
        "system_prompt": "You analyse GPU spend.",
        "cores": 4,
        "memory_mb": 8192,
    }
    made, spawns = await asyncio.gather(call(nc, "agents.create", create), settled_spawns(node, 1))
    reply = msgspec.convert(made, AgentsReply)

    # The node was asked for the agent's size, and told which unit the VM's runner is.
    [body] = spawns
    assert (body["cores"], body["memory"]) == (4, 8192)
    runner = reply.runner
    assert runner is not None and runner.state == "ready", made
    assert (runner.pool, runner.provider, runner.cores, runner.memory_mb) == (
        "agents-analyst",
        "hypercore",
        4,
        8192,
    )
    assert body["env"][0].startswith("FLEET_LABEL=fleet.agents-analyst.")
    assert body["env"][1:] == [
        "FLEET_NATS_URL=nats://10.0.0.1:4222",
        "FLEET_RUNNER__POOL=agents-analyst",
        f"FLEET_RUNNER__UNIT={runner.unit}",
        "FLEET_RUNNER__PROVIDER=hypercore",
    ]
    assert reply.agents[0].runtime == "hypercore" and reply.used == 1

    # The money passed the cost-guard, priced at that size (4 x $0.05 per core-hour).
    [verdict] = hypercore.verdicts.items
    assert verdict.decision == "approved" and verdict.usd_per_hour == pytest.approx(0.2)
    request = verdict.request
    assert isinstance(request, ProvisionRequest)
    assert (request.cores, request.memory_mb, request.pin, request.requester) == (
        4,
        8192,
        True,
        "erin",
    )
    assert runner.usd_per_hour == pytest.approx(0.2)

    # Deleting the agent releases its microVM, through the cost-guard.
    gone = await call(nc, "agents.delete", {"name": "analyst", "user": "erin"})
    assert gone["used"] == 0
    await hypercore.units.until(lambda ev: runner.unit in states(ev, "terminated"), 15)
    release = hypercore.verdicts.items[-1]
    assert isinstance(release.request, ReleaseRequest) and release.decision == "approved"
    assert release.request.unit == runner.unit
    assert [r.query.get("id") for r in node.requests if r.path == "/stop"] == node.destroyed


async def test_a_size_no_node_can_take_is_a_clear_error_and_leaves_no_agent(
    nc: Client, node: HypercoreFake, hypercore: Plane
) -> None:
    create = {"name": "huge", "user": "erin", "system_prompt": "p", "cores": 32}
    answer = await call(nc, "agents.create", create)

    error = answer["error"]
    assert error["code"] == 503
    message = error["message"]
    assert message.startswith("agent 'huge' was not created: its runner could not start:")
    assert "no node can take a microVM of 32 vCPUs and 512 MiB" in message
    assert "no suitable node found" in message  # the node's own words
    [spawn] = [r.body for r in node.requests if r.path == "/spawn"]
    assert spawn["cores"] == 32  # the node was asked, and refused
    assert node.workloads == {}
    mine = await agents_of(nc, "erin")
    assert (mine.agents, mine.used) == ([], 0)  # the quota is handed back too

    # A size dearer than an agent's runner may cost ($2/h: 64 x $0.05 is $3.20) is
    # never asked of the node: no offer is within the ceiling the cost-guard approved.
    create = {"name": "dear", "user": "erin", "system_prompt": "p", "cores": 64}
    error = (await call(nc, "agents.create", create))["error"]
    assert error["code"] == 503
    assert error["message"].startswith("agent 'dear' was not created: its runner could not")
    assert "hypercore: no CPU offer within $2/h" in error["message"]
    assert len([r for r in node.requests if r.path == "/spawn"]) == 1
    assert (await agents_of(nc, "erin")).used == 0


async def test_on_local_an_agents_runner_is_a_process_that_serves_only_it(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    local = {"local": {"kind": "local", "max_units": 2}}
    plane = await start_plane(nats_url, nc, tmp_path, "local", local)
    shared = RunnerService(
        load_settings(
            RunnerSettings,
            env={},
            overrides=kit(tmp_path, "shared", runner={"agents": [], "unit": "shared-1"}),
        ),
        nats_url=nats_url,
    )
    await shared.start()
    try:
        create = {"name": "solo", "user": "fay", "system_prompt": "You are solo.", "cores": 2}
        made = await call(nc, "agents.create", create)
        reply = msgspec.convert(made, AgentsReply)
        runner = reply.runner
        assert runner is not None and runner.state == "ready", made
        assert runner.provider == "local" and runner.pool == "agents-solo"
        [pid] = plane.provisioner.providers.get("local").pids().values()  # type: ignore[union-attr]
        assert alive(pid)

        # Its own runner answers; the shared runner leaves it alone.
        client = A2AClient(nc, "agents.solo", tenant="fay", timeout_s=20)
        task = await client.send("hello")
        assert task.status.state == TaskState.COMPLETED
        [artifact] = task.artifacts
        assert artifact.metadata is not None
        assert artifact.metadata["runner"].startswith(f"{runner.unit}-")
        assert "solo" not in shared.dynamic.hosts  # type: ignore[union-attr]

        await call(nc, "agents.delete", {"name": "solo", "user": "fay"})
        await plane.units.until(lambda ev: runner.unit in states(ev, "terminated"), 20)
        await eventually(lambda: not alive(pid))
    finally:
        await shared.stop()
        await stop_plane(plane)


def test_load_never_adds_runners_to_an_agents_own_pool() -> None:
    """Only the gateway knows an agent's size, so the scaler holds its pool at the
    runner it pinned; a configured agent pool is scaled by load as before."""
    scaler = Scaler(load_settings(ScalerSettings, env={}, overrides={}))
    t0 = 1_800_000_000.0

    def busiest(pool: str, policy: Policy) -> int:
        state, most = PoolState(pool=pool), 1
        for i in range(30):
            load = PoolMetrics(
                pool=pool, units_ready=1, inflight=400.0, capacity=100.0, queue_depth=300.0,
                utilization=1.0, arrival_rate=80.0, ts=t0 + i,
            )  # fmt: skip
            state, proposal = decide(state, load, policy, t0 + i)
            if proposal is not None:
                most = max(most, proposal.desired)
        return most

    assert busiest("agents-solo", scaler.policy_for("agents-solo")) == 1
    assert busiest("gpu", scaler.policy_for("gpu")) > 1


async def test_on_local_a_runner_that_cannot_serve_its_agent_fails_the_create_with_why(
    nats_url: str, nc: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Claude model on a runner without ANTHROPIC_API_KEY: the runner process says so
    and exits before it is ready, and the create answers with those words instead of
    "ready" for an agent nobody serves. A model no runner serves is refused at once."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    local = {"local": {"kind": "local", "max_units": 2}}
    plane = await start_plane(nats_url, nc, tmp_path, "local", local)
    try:
        create = {"name": "gpt", "user": "gil", "system_prompt": "p", "model": "gpt-4"}
        error = (await call(nc, "agents.create", create))["error"]
        assert error["code"] == 400 and "model" in error["message"], error
        assert "claude-" in error["message"]

        create = {"name": "keyless", "user": "gil", "system_prompt": "p"}
        create["model"] = "claude-sonnet-4-5"
        error = (await call(nc, "agents.create", create))["error"]
        assert error["code"] == 503, error
        message = error["message"]
        assert message.startswith("agent 'keyless' was not created: its runner could not start:")
        assert "local reports it failed" in message
        assert "cannot serve agent keyless" in message and "ANTHROPIC_API_KEY" in message
        assert (await agents_of(nc, "gil")).used == 0  # undone, the quota handed back
        assert plane.provisioner.providers.get("local").pids() == {}  # type: ignore[union-attr]
    finally:
        await stop_plane(plane)
