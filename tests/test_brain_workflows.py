"""The GPU-agent guide's workflows, each played by a scripted Claude (the fake Messages
API sends the model's tool calls) against the real gateway and the real cost-guard
(stand-ins only for the provisioner's answers: units, offers, pool metrics). Each test
asserts the tool calls, the cost-guard's verdicts and the audit records."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from contracts import subjects
from contracts.a2a import TaskState
from contracts.commands import ProvisionRequest, ReleaseRequest, Verdict
from contracts.events import Alert, AuditRecord
from services.a2a.client import A2AClient
from services.brain.followups import FollowupStore
from services.costguard.service import CostGuard
from services.costguard.settings import CostguardSettings
from services.gateway.service import Gateway, GatewaySettings
from services.kit.config import load_settings
from tests.fakes.anthropic_api import text, tool
from tests.fakes.fleet_api import FakeFleetOwners
from tests.provisioner_helpers import Watch
from tests.signing_helpers import signing
from tests.test_brain import claude, start_brain  # noqa: F401  (the fixture)

POOLS = {
    "llm": {"gpu_model": "L40S", "providers": ["sim", "vastai", "ionet"], "max_usd_per_hour": 5},
    "h100": {"gpu_model": "H100", "providers": ["sim"], "max_usd_per_hour": 10},
}
BUDGET = {"daily_usd": 5000, "approval_threshold_usd_per_hour": 100}


class Stack:
    """What a workflow runs against, and what it watches."""

    def __init__(self, owners: FakeFleetOwners) -> None:
        self.owners = owners
        self.verdicts: Watch = Watch(Verdict)
        self.audits: Watch = Watch(AuditRecord)
        self.alerts: Watch = Watch(Alert)

    def brain_calls(self) -> list[str]:
        return [a.action for a in self.audits.items if a.actor == "brain"]

    def guard_verdicts(self) -> list[tuple[str, str]]:
        """(kind of request, decision) of each verdict, in order."""
        return [(type(v.request).__name__, v.decision) for v in self.verdicts.items]

    def release_then_provision(self) -> tuple[ReleaseRequest, ProvisionRequest]:
        """The two commands of a replace-style workflow, both approved and audited by the
        cost-guard in that order."""
        assert self.guard_verdicts() == [
            ("ReleaseRequest", "approved"),
            ("ProvisionRequest", "approved"),
        ]
        guard = [a.action for a in self.audits.items if a.actor == "costguard"]
        assert guard == ["approved ReleaseRequest", "approved ProvisionRequest"]
        release, provision = (v.request for v in self.verdicts.items)
        assert isinstance(release, ReleaseRequest) and isinstance(provision, ProvisionRequest)
        return release, provision


@pytest.fixture
async def stack(nats_url: str, nc: Client, tmp_path: Path) -> AsyncIterator[Stack]:
    owners = await FakeFleetOwners(nc, judge=False).start()
    guard = CostGuard(
        load_settings(
            CostguardSettings,
            env={},
            overrides={
                "store": {"dir": str(tmp_path / "guard")},
                "signing": signing("costguard"),
                "stop_deadline_s": 1.0,
                "budget": BUDGET,
                "pools": POOLS,
            },
        ),
        nats_url=nats_url,
    )
    gw = Gateway(
        load_settings(
            GatewaySettings,
            env={},
            overrides={"store": {"dir": str(tmp_path / "gw")}, "pools": POOLS},
        ),
        nats_url=nats_url,
    )
    st = Stack(owners)
    await st.verdicts.start(nc, "fleet.budget.*")
    await st.audits.start(nc, subjects.AUDIT_ALL)
    await st.alerts.start(nc, subjects.ALERT_ALL)
    await guard.start()
    await gw.start()
    try:
        yield st
    finally:
        await gw.stop()
        await guard.stop()
        for w in (st.verdicts, st.audits, st.alerts):
            await w.stop()
        await owners.stop()
        await asyncio.sleep(0)


async def run(nc: Client, nats_url: str, tmp_path: Path, message: str) -> Any:
    brain = await start_brain(nats_url, tmp_path / "brain", max_steps=8)
    try:
        task = await A2AClient(nc, "fleet", tenant="ops", timeout_s=30).send(message)
    finally:
        await brain.stop()
    assert task.status.state == TaskState.COMPLETED, task.status
    return task


def tool_results(fake: Any) -> list[str]:
    """The tool results the model was sent, in order (what it saw of each call)."""
    return [str(b.get("content")) for b in fake.tool_results()]


async def test_cost_aware_scaling_at_3_pm_against_a_5000_budget(
    nats_url: str,
    nc: Client,
    tmp_path: Path,
    stack: Stack,
    claude: Any,  # noqa: F811
) -> None:
    fake = claude(
        [
            [text("Check stats and spend first."), tool("get_gpu_stats", {})],
            [text("Then the budget trajectory."), tool("get_budget", {})],
            [
                text("u-idle has been idle 2 h: non-critical, destroy it."),
                tool("destroy_gpu_instance", {"provider": "sim", "instance_id": "sim-7001"}),
            ],
            [
                text("Under 50% of $5000 with queue building: two H100s for 4 hours."),
                tool("provision_gpu", {"gpu_model": "H100", "count": 2, "duration": 14400}),
            ],
            [text("Scaled: released one idle L40S, added 2 H100 for 4 h, well within budget.")],
        ]
    )
    await run(
        nc,
        nats_url,
        tmp_path,
        "We have a $5000 daily budget. Current time is 3 PM. Check GPU stats. If we're "
        "trending to exceed budget, scale down; if under 50% with high queue depth, scale up "
        "with H100s.",
    )
    assert stack.brain_calls() == [
        "get_gpu_stats",
        "get_budget",
        "destroy_gpu_instance",
        "provision_gpu",
    ]
    release, provision = stack.release_then_provision()
    assert release.unit == "u-idle"
    assert (provision.pool, provision.count, provision.duration_s) == ("h100", 2, 14400.0)
    approved = stack.verdicts.items[1]
    assert approved.budget_usd == 5000 and approved.usd_per_hour == pytest.approx(8.0)
    assert approved.projected_today_usd <= 5000
    # The model saw the budget and each verdict; both decisions are audited with reasons.
    seen = tool_results(fake)
    assert '"daily_usd":5000' in seen[1].replace(" ", "")
    assert '"approved"' in seen[3]
    brain = {a.action: a for a in stack.audits.items if a.actor == "brain"}
    assert "non-critical" in brain["destroy_gpu_instance"].reasoning
    assert brain["provision_gpu"].cost_impact_usd_per_hour == pytest.approx(8.0)


async def test_routing_a_llama_70b_request_and_queueing_when_nothing_fits(
    nats_url: str,
    nc: Client,
    tmp_path: Path,
    stack: Stack,
    claude: Any,  # noqa: F811
) -> None:
    claude(
        [
            [
                text("LLaMA-70B needs at least 40 GB of VRAM."),
                tool("get_available_gpus", {"min_vram_gb": 40, "vendor": "NVIDIA"}),
            ],
            [text("What is running already?"), tool("list_gpu_instances", {"pool": "llm"})],
            [
                text("Placement under $0.50/h for high priority on a budget."),
                tool("place_workload", {"min_vram_gb": 40, "max_usd_per_hour": 0.5}),
            ],
            [
                text("No capacity at that price: queue it and look again in 10 minutes."),
                tool(
                    "schedule_followup",
                    {"check": "route the queued LLaMA-70B request (>= 40 GB)", "after_minutes": 10},
                ),
            ],
            [text("Queued: nothing fits under $0.50/h now; I will re-check in 10 minutes.")],
        ]
    )
    await run(
        nc,
        nats_url,
        tmp_path,
        "New AI inference request: Model: LLaMA-70B, Priority: High. Find the optimal GPU "
        "(minimum 40GB VRAM). Provision if needed, or queue if no capacity.",
    )
    assert stack.brain_calls() == [
        "get_available_gpus",
        "list_gpu_instances",
        "place_workload",
        "schedule_followup",
    ]
    assert stack.guard_verdicts() == []  # nothing bought
    offers = next(a for a in stack.audits.items if a.action == "get_available_gpus")
    assert "RTX4090" not in offers.result  # 24 GB cards were never offered for it
    placed = next(a for a in stack.audits.items if a.action == "place_workload")
    assert '"ok":false' in placed.result
    # Queued durably: the follow-up waits in its KV bucket for the next brain to run it.
    [(queued, _rev)] = await (await FollowupStore.open(nc.jetstream())).all()
    assert "LLaMA-70B" in queued.check and queued.requester == "brain"


async def test_failover_of_an_instance_that_failed_health_checks_three_times(
    nats_url: str,
    nc: Client,
    tmp_path: Path,
    stack: Stack,
    claude: Any,  # noqa: F811
) -> None:
    stack.owners.add_unit("u-vast", "vastai", "vast-ai-12345")
    claude(
        [
            [text("Find the failed instance."), tool("list_gpu_instances", {"provider": "vastai"})],
            [
                text("Failed health checks 3 times: destroy it."),
                tool(
                    "destroy_gpu_instance", {"provider": "vastai", "instance_id": "vast-ai-12345"}
                ),
            ],
            [
                text("Replacement on io.net, same model."),
                tool("provision_gpu", {"gpu_model": "L40S", "provider": "ionet", "count": 1}),
            ],
            [
                text("Tell the ops team."),
                tool(
                    "send_alert",
                    {
                        "severity": "critical",
                        "kind": "failover",
                        "message": "vast-ai-12345 failed health checks 3 times; replaced on ionet",
                        "pool": "llm",
                        "unit": "u-vast",
                    },
                ),
            ],
            [text("Failed over vast-ai-12345 to io.net and alerted ops.")],
        ]
    )
    await run(
        nc,
        nats_url,
        tmp_path,
        "GPU instance vast-ai-12345 has failed health checks 3 times. Implement failover: "
        "destroy it, provision a replacement on a different provider (IONet), send an alert.",
    )
    assert stack.brain_calls() == [
        "list_gpu_instances",
        "destroy_gpu_instance",
        "provision_gpu",
        "send_alert",
    ]
    release, replacement = stack.release_then_provision()
    assert release.unit == "u-vast"
    assert (replacement.pool, replacement.provider) == ("llm", "ionet")
    [alert] = stack.alerts.items
    assert alert.severity == "critical" and "vast-ai-12345" in alert.message


async def test_a_batch_of_1000_images_under_100_dollars(
    nats_url: str,
    nc: Client,
    tmp_path: Path,
    stack: Stack,
    claude: Any,  # noqa: F811
) -> None:
    claude(
        [
            [text("Price RTX 4090s."), tool("get_available_gpus", {"gpu_model": "RTX4090"})],
            [
                text("5 GPU-hours at $0.40/h = $2: five cards for one hour."),
                tool("provision_gpu", {"gpu_model": "RTX4090", "count": 5, "duration": 3600}),
            ],
            [
                text("Check progress in 30 minutes."),
                tool(
                    "schedule_followup",
                    {"check": "batch of 1000 images: progress and failures", "after_minutes": 30},
                ),
            ],
            [text("Five RTX 4090s for one hour, about $2.00, released automatically at the end.")],
        ]
    )
    await run(
        nc,
        nats_url,
        tmp_path,
        "We have 1000 images to process with Stable Diffusion. Estimated time: 5 hours with "
        "1 GPU. Create an optimal batch plan on RTX 4090s; total cost must be < $100.",
    )
    assert stack.brain_calls() == ["get_available_gpus", "provision_gpu", "schedule_followup"]
    assert stack.guard_verdicts() == [("ProvisionRequest", "approved")]
    [verdict] = stack.verdicts.items
    assert isinstance(verdict.request, ProvisionRequest)
    # No pool runs 4090s: an ad-hoc pool, priced by the cost-guard from the live offer.
    assert verdict.request.pool == "adhoc-rtx4090" and verdict.request.duration_s == 3600
    assert verdict.usd_per_hour == pytest.approx(2.0)  # 5 x $0.40, 1 hour: $2 < $100
    guard = [a for a in stack.audits.items if a.actor == "costguard"]
    assert [a.action for a in guard] == ["approved ProvisionRequest"]
    assert "0.40" in guard[0].reasoning or "$2.00" in guard[0].reasoning
