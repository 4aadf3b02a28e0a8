"""The cost and performance advisors as A2A agents (`a2a.cost-advisor.rpc`,
`a2a.performance-advisor.rpc`), served by the brain's process.

A task carries the report as a data part (`{"report": {...}}`, what the
coordinator sends), or text naming the days ("the last 7 days"), in which case
the advisor reads `fleet.api.fleet_report` itself. The answer is the advisor's
View (services.brain.advisors) as a data part, and its summary as text. Without
a model the rules write it; with ANTHROPIC_API_KEY, Claude reads the report and
the rules' opinions and writes the summary from the advisor's angle. Every
answer is audited on `fleet.audit.<advisor>`.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import anthropic
import msgspec

from contracts import subjects
from contracts.a2a import TaskState
from contracts.events import AuditRecord
from services.a2a import A2AEvent, TaskContext
from services.brain.advisors import COST, PERFORMANCE, View, cost_view, performance_view
from services.brain.settings import BrainOptions

INSTRUCTIONS = {
    COST: "You are the fleet's cost optimizer: optimize GPU costs while keeping the SLA. "
    "Read the report and the rules' opinions; in at most 120 words say which changes save "
    "the most money and why, citing the report's numbers.",
    PERFORMANCE: "You are the fleet's performance optimizer: maximize throughput "
    "and minimize latency. Read the report and the rules' opinions; in at most 120 words say "
    "which changes risk the load (under-provisioning, slower jobs, re-provisioning) and "
    "which help it, citing the report's numbers.",
}
"""The guide's two optimizer agents, as system prompts."""


class AdvisorHost(Protocol):
    opts: BrainOptions
    client: anthropic.AsyncAnthropic | None

    async def api(self, op: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def publish(self, subject: str, msg: Any, *, msg_id: str | None = None) -> None: ...


def days_in(text: str, default: float = 7.0) -> float:
    """The days a request names ('last 7 days', 'past week'), else `default`."""
    m = re.search(r"(\d+(?:\.\d+)?)\s*days?", text, re.I)
    if m:
        return min(35.0, max(0.1, float(m.group(1))))
    if re.search(r"\b(week|7-day)\b", text, re.I):
        return 7.0
    if re.search(r"\b(day|today|24 ?h)\b", text, re.I):
        return 1.0
    return default


def report_in(ctx: TaskContext) -> dict[str, Any] | None:
    """The report a data part of the message carries, if any."""
    for part in ctx.message.parts:
        data = part.data
        if isinstance(data, dict) and isinstance(data.get("report"), dict):
            found: dict[str, Any] = data["report"]
            return found
    return None


RULES: dict[str, Callable[[dict[str, Any]], View]] = {
    COST: cost_view,
    PERFORMANCE: performance_view,
}


class AdvisorAgent:
    """Executor of one advisor (services.a2a.Executor)."""

    def __init__(self, host: AdvisorHost, name: str) -> None:
        self.host = host
        self.name = name
        self.rules = RULES[name]

    async def execute(self, ctx: TaskContext) -> AsyncIterator[A2AEvent]:
        report = report_in(ctx)
        if report is None:
            yield ctx.status(TaskState.WORKING, "reading fleet.api.fleet_report")
            report = await self.host.api("fleet_report", {"days": days_in(ctx.text)})
            if "error" in report:
                message = report["error"].get("message", "the report is not available")
                yield ctx.status(TaskState.FAILED, f"no report to advise on: {message}")
                return
        view = self.rules(report)
        if self.host.client is not None:
            yield ctx.status(TaskState.WORKING, f"asking {self.host.opts.model}")
            view = await self._model(view, report)
        await self._audit(ctx.task_id, view, report)
        yield ctx.artifact(text=view.summary, data=msgspec.to_builtins(view), name="advice")
        yield ctx.status(TaskState.COMPLETED, view.summary)

    async def _model(self, view: View, report: dict[str, Any]) -> View:
        """The rules' opinions, with Claude's summary from this advisor's angle."""
        assert self.host.client is not None
        brief = {k: v for k, v in report.items() if k not in ("load_by_hour", "read")}
        prompt = json.dumps({"report": brief, "rules": msgspec.to_builtins(view.opinions)})
        try:
            msg = await self.host.client.messages.create(
                model=self.host.opts.model,
                max_tokens=min(self.host.opts.max_tokens, 1024),
                system=INSTRUCTIONS[self.name],
                messages=[{"role": "user", "content": prompt[:60_000]}],
            )
        except anthropic.APIError as exc:
            return msgspec.structs.replace(
                view, summary=f"{view.summary} (the model did not answer: {exc}; rules only)"
            )
        text = "".join(getattr(b, "text", "") for b in msg.content).strip()
        return msgspec.structs.replace(view, summary=text or view.summary, by=self.host.opts.model)

    async def _audit(self, task_id: str, view: View, report: dict[str, Any]) -> None:
        stances = ", ".join(f"{o.kind}:{o.stance}" for o in view.opinions)
        rec = AuditRecord(
            actor=self.name,
            action="advise",
            reasoning=f"{view.by}: {view.summary}"[:4000],
            result=f"{len(view.opinions)} opinions ({stances})"[:4000],
            refs={"task": task_id, "days": f"{report.get('days', 0):g}"},
        )
        await self.host.publish(subjects.audit(self.name), rec)


Consult = Callable[[str, dict[str, Any]], Awaitable[View | None]]
"""Ask one advisor (by agent name) about a report; None when it did not answer."""
