"""The brain (`fleet run brain`): agent `fleet` over A2A, and a routine check on a timer.

With ANTHROPIC_API_KEY set (ANTHROPIC_BASE_URL is honoured, as the SDK reads
it), tasks run Claude with the fleet tools (services.brain.loop); without it,
the deterministic rule policy answers (services.brain.rules) and says so. Every
tool call goes through fleet.api, so money still passes the cost-guard, and is
audited on `fleet.audit.brain`. The routine check (every
`brain.routine_interval_s`) reads stats, health and the budget, runs idle
cleanup, and audits each finding; anomalies are also published as Alerts.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import anthropic
import msgspec

from contracts import subjects
from contracts.a2a import HEADER_TENANT, AgentCapabilities, AgentCard, AgentProvider, AgentSkill
from contracts.api import NoArgs
from contracts.api.replies import FollowupsReply
from contracts.api.requests import FollowupCall
from contracts.events import Alert
from services.a2a import A2AServer, nats_interface
from services.a2a.client import A2AClient
from services.brain import followups, rulemode
from services.brain.advisoragent import AdvisorAgent
from services.brain.advisors import ADVISORS, View
from services.brain.agent import BrainAgent, limits_of
from services.brain.routine import findings
from services.brain.settings import BrainOptions, BrainSettings
from services.brain.toolbox import Toolbox
from services.kit import Service
from services.kit.redact import add_secret

log = logging.getLogger("fleet.brain")

SKILLS = (
    (
        "provision",
        "Provision GPUs",
        "Provision GPU units of a model, for a duration or until released, within budget.",
        ["gpu", "cost"],
    ),
    (
        "release",
        "Destroy an instance",
        "Release a GPU instance named by its provider and instance id.",
        ["gpu", "cost"],
    ),
    ("cleanup", "Clean up idle GPUs", "Release GPUs idle past a threshold.", ["cost"]),
    (
        "place",
        "Place a workload",
        "Find where a workload with a VRAM need runs cheapest.",
        ["placement"],
    ),
    (
        "report",
        "Report",
        "Stats, instances, spend, budget and health at a glance.",
        ["observability"],
    ),
    (
        "scale",
        "Scale pools",
        "Read utilization, queues and budget; add or remove capacity.",
        ["scaling"],
    ),
    (
        "failover",
        "Failover",
        "Replace a failing instance on another provider, move its work and alert the operators.",
        ["reliability"],
    ),
    (
        "jobs",
        "Run GPU jobs",
        "Submit GPU work routed to the cheapest pool whose GPU meets it, within budget; "
        "follow, list and cancel jobs, and read each pool's queue.",
        ["gpu", "jobs", "queue"],
    ),
    ("batch", "Batch plans", "Plan and run a batch under a cost cap and a deadline.", ["batch"]),
    (
        "history",
        "History and advice",
        "What the fleet did and cost over the last days, and what to change: the cost and "
        "performance advisors' recommendations, weighed, each with its numbers.",
        ["history", "cost", "advice"],
    ),
)
RULE_NOTE = " Without a model: only on an explicit command naming what and how many."
EXAMPLES = {
    "jobs": ["run 20 inference batches needing 40 GB of VRAM at low priority"],
    "place": ["where should a 70B model with 40 GB VRAM run?"],
    "provision": ["provision 2 H100 for 2 hours"],
    "release": ["destroy instance 12345 on vastai"],
    "cleanup": ["clean up GPUs idle for more than 30 minutes"],
    "history": ["analyse the last 7 days and recommend changes"],
}


def skills_for(model: str | None) -> list[AgentSkill]:
    """The skills this mode can do: all with a model; without one, those the rule policy
    carries out (the acting ones on an explicit command only)."""
    out = []
    for i, n, d, t in SKILLS:
        if model is None and i not in rulemode.SKILLS_WITHOUT_MODEL:
            continue
        if model is None and i in ("provision", "release", "cleanup"):
            d += RULE_NOTE
        out.append(AgentSkill(id=i, name=n, description=d, tags=t, examples=EXAMPLES.get(i, [])))
    return out


def brain_card(nats_url: str, model: str | None) -> AgentCard:
    """The AgentCard of agent `fleet`."""
    how = f"Claude ({model})" if model else "a deterministic rule policy (no model configured)"
    return AgentCard(
        name=subjects.BRAIN_AGENT,
        description="fleetplane's autonomous GPU infrastructure manager; answers with " + how,
        supported_interfaces=[nats_interface(subjects.BRAIN_AGENT, nats_url)],
        version="0.1.0",
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain", "application/json"],
        skills=skills_for(model),
        provider=AgentProvider(organization="fleetplane", url="https://fleetplane.dev"),
    )


def advisor_card(name: str, nats_url: str, model: str | None) -> AgentCard:
    """The AgentCard of one advisor."""
    how = f"Claude ({model})" if model else "deterministic rules (no model configured)"
    angle = "cost" if name.startswith("cost") else "performance"
    return AgentCard(
        name=name,
        description=f"fleetplane's {angle} advisor: turns the fleet report into "
        f"recommendations from the {angle} angle; answers with {how}",
        supported_interfaces=[nats_interface(name, nats_url)],
        version="0.1.0",
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain", "application/json"],
        skills=[
            AgentSkill(
                id="advise",
                name=f"{angle.capitalize()} advice",
                description=f"Send the report as a data part {{'report': ...}} (or ask about "
                f"the last N days): an opinion on each recommendation from the {angle} angle.",
                tags=["advice", angle],
                examples=["advise on the last 7 days"],
            )
        ],
        provider=AgentProvider(organization="fleetplane", url="https://fleetplane.dev"),
    )


def build_client(opts: BrainOptions, env: dict[str, str]) -> anthropic.AsyncAnthropic | None:
    """The Anthropic client when a key is set; None selects the rule policy."""
    key = env.get("ANTHROPIC_API_KEY", "").strip()
    if not key:
        return None
    add_secret(key)  # the key may come back in an endpoint's error text: never pass it on
    return anthropic.AsyncAnthropic(
        api_key=key,
        base_url=env.get("ANTHROPIC_BASE_URL") or None,
        max_retries=0,
        timeout=opts.api_timeout_s,
    )


class Brain(Service[BrainSettings]):
    """See the module docstring."""

    name = "brain"
    singleton = True  # one routine check per interval; a standby takes over A2A too
    description = "The agent: Claude with fleet tools, A2A agent `fleet`, routine checks"
    migrations: ClassVar[Sequence[str] | None] = []

    async def setup(self) -> None:
        self.opts = self.settings.brain
        self.client = build_client(self.opts, dict(os.environ))
        self.routine_runs = 0
        card = brain_card(self.nats_url, self.opts.model if self.client else None)
        self.a2a = await A2AServer.mount(
            self,
            subjects.BRAIN_AGENT,
            BrainAgent(self),
            card,
            self.settings.a2a,
            queue_group="brain",
        )
        self.advisors = [
            await A2AServer.mount(
                self,
                name,
                AdvisorAgent(self, name),
                advisor_card(name, self.nats_url, self.opts.model if self.client else None),
                self.settings.a2a,
                queue_group=name,
            )
            for name in ADVISORS
        ]
        if self.opts.routine_interval_s > 0:
            self.every(self.opts.routine_interval_s, self.routine_check, "routine")
        self.followups = await followups.FollowupStore.open(self.js, self.settings.nats.replicas)
        await self.api_endpoint("followup.schedule", FollowupCall, self.on_followup)
        await self.api_endpoint("followup.list", NoArgs, self.on_followups)
        self.every(self.opts.followup_check_s, self.run_due_followups, "followups")
        log.info("brain ready", extra={"mode": "model" if self.client else "rules"})

    async def teardown(self) -> None:
        for advisor in self.advisors:
            await advisor.stop()
        await self.a2a.stop()
        if self.client is not None:
            await self.client.close()

    async def api(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        """A fleet.api answer, or {"error": {...}} saying what did not answer."""
        slow = op == "fleet_report"  # reads days of streams
        timeout = self.opts.report_timeout_s if slow else self.opts.fleet_api_timeout_s
        return await self.api_call(op, body, timeout)

    async def consult(self, advisor: str, report: dict[str, Any]) -> View | None:
        """One advisor's view of the report over A2A, or None when it did not answer."""
        client = A2AClient(self.nc, advisor, timeout_s=self.opts.advisor_timeout_s)
        message = A2AClient.user_message("advise on this report", data={"report": report})
        try:
            task = await client.send(message)
        except Exception as exc:
            log.warning("advisor did not answer", extra={"advisor": advisor, "why": str(exc)})
            return None
        for artifact in task.artifacts or []:
            for part in artifact.parts:
                if isinstance(part.data, dict) and "opinions" in part.data:
                    return msgspec.convert(part.data, View)
        return None

    # -- follow-ups ------------------------------------------------------------------------
    async def on_followup(self, call: FollowupCall, _d: Any) -> FollowupsReply:
        """`fleet.api.followup.schedule`: store it; it runs as a brain task when due."""
        f = followups.new_followup(call, time.time())
        await self.followups.put(f)
        self.metrics.count("followups_scheduled")
        return FollowupsReply(followups=[f])

    async def on_followups(self, _q: NoArgs, _d: Any) -> FollowupsReply:
        """`fleet.api.followup.list`: what waits, soonest first."""
        waiting = sorted((f for f, _ in await self.followups.all()), key=lambda f: f.due_ts)
        return FollowupsReply(followups=waiting)

    async def run_due_followups(self) -> None:
        """Claim each due follow-up and start it as a task of agent `fleet`."""
        stored = await self.followups.all()
        revisions = {f.id: rev for f, rev in stored}
        for f in followups.due([f for f, _ in stored], time.time()):
            if not await self.followups.claim(f, revisions[f.id]):
                continue
            try:
                await self.nc.request(
                    subjects.a2a_rpc(subjects.BRAIN_AGENT),
                    followups.task_request(f),
                    timeout=self.opts.fleet_api_timeout_s,
                    headers={HEADER_TENANT: followups.TENANT},
                )
            except Exception as exc:
                log.warning("follow-up did not start", extra={"id": f.id, "why": str(exc)})
                await self.followups.put(f)  # runs at the next look
                continue
            self.metrics.count("followups_run")

    async def routine_check(self) -> None:
        """Stats, scaling needs, idle cleanup, health and anomalies, each audited."""
        self.routine_runs += 1
        toolbox = Toolbox(self, f"routine-{self.routine_runs}", limits_of(self.opts))
        why = "routine check"
        stats, _ = await toolbox.call("get_gpu_stats", {}, why)
        health, _ = await toolbox.call("get_health_status", {}, why)
        budget, _ = await toolbox.call("get_budget", {}, why)
        minutes = self.opts.idle_cleanup_s / 60.0
        await toolbox.call("cleanup_idle_gpus", {"idle_threshold_minutes": minutes}, why)
        for f in findings(stats, health, budget):
            await toolbox.audit(f"routine.{f.kind}", {"pool": f.pool}, why, f.message, 0.0)
            if f.is_anomaly:
                alert = Alert(
                    kind=f"brain_{f.kind}", message=f.message, severity=f.severity, pool=f.pool
                )
                await self.publish(subjects.alert(f.severity), alert)
                self.metrics.count("alerts")
        self.metrics.count("routine_checks")


SERVICE = Brain
