"""A hosted agent's fleet tools: the subset its owner gave it, and nothing else.

The model is shown only the tools of the agent's subset, each generated from
the fleet.api operation it stands for (contracts.api.tools), and every call
goes through `fleet.api.<op>` as the brain's do, so a provision still waits for
the cost-guard's verdict. A model can still name a tool it was not shown (a
prompt can talk it into that): such a call is refused with the reason as an
`is_error` tool result and never reaches fleet.api. Every call, refused or not,
is audited on `fleet.audit.agent-<name>` with the model's words before it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

from contracts import subjects
from contracts.api.ops import op
from contracts.api.tools import (
    MCP_TOOLS,
    ToolArgsError,
    call_failed,
    call_record,
    cost_impact,
    request_body,
    tool_request,
    tool_spec,
    tools_problem,
)
from services.runner.settings import RunnerSection

log = logging.getLogger("fleet.runner")


class ToolStep(msgspec.Struct, frozen=True, kw_only=True):
    """One tool call of a turn and what it answered, as the task's events show it."""

    name: str
    args: Any
    result: dict[str, Any]
    is_error: bool
    refused: bool = False
    """Refused here (not the agent's tool, or arguments its operation does not take)."""


class ApiBus(Protocol):
    """What the tools need from the runner service."""

    async def api_call(self, op: str, body: Any, timeout_s: float) -> dict[str, Any]: ...

    async def publish(self, subject: str, msg: Any, *, msg_id: str | None = None) -> None: ...


def actor_of(agent: str) -> str:
    """Who hosted agent `agent` is on the wire: its requester and audit actor."""
    return subjects.token(f"agent-{agent}", "agent name")


def refusal(name: str, allowed: Sequence[str]) -> str | None:
    """Why the agent may not call tool `name`, or None when it may; pure."""
    if name in allowed:
        return None
    mine = ", ".join(allowed) or "none"
    return (
        f"refused: {name!r} is not one of this agent's tools ({mine}); its owner can give "
        "it more with `fleet agents create --tool NAME`"
    )


class AgentTools:
    """The fleet tools of one hosted agent; see the module docstring."""

    def __init__(
        self, agent: str, allowed: Sequence[str], bus: ApiBus, timeout_s: float = 10.0
    ) -> None:
        problem = tools_problem(allowed)
        if problem is not None:
            raise ValueError(problem)
        self.agent = agent
        self.actor = actor_of(agent)
        self.allowed = tuple(sorted(set(allowed)))
        self.bus = bus
        self.timeout_s = timeout_s

    def specs(self) -> list[dict[str, Any]]:
        """The tools as the Messages API takes them: the agent's subset only."""
        return [tool_spec(name, MCP_TOOLS) for name in self.allowed]

    async def call(self, name: str, args: Any, reasoning: str, task_id: str) -> ToolStep:
        """Carry out one tool call of the model; refused (and audited) outside the subset."""
        why = refusal(name, self.allowed)
        operation = op(MCP_TOOLS[name]) if why is None else None
        request = None
        if operation is not None:
            try:
                request = tool_request(operation, args, self.actor)
            except ToolArgsError as exc:
                why = f"refused: invalid arguments for {name}: {exc}"
        if operation is None or request is None:
            result: dict[str, Any] = {"error": why}
            await self._audit(f"refused.{name}", args, result, reasoning, 0.0, task_id)
            return ToolStep(name=name, args=args, result=result, is_error=True, refused=True)
        result = await self.bus.api_call(operation.name, request_body(request), self.timeout_s)
        impact = cost_impact(operation, result)
        await self._audit(name, args, result, reasoning, impact, task_id)
        return ToolStep(
            name=name, args=args, result=result, is_error=call_failed(operation, result)
        )

    async def _audit(
        self, action: str, args: Any, result: Any, reasoning: str, impact: float, task_id: str
    ) -> None:
        rec = call_record(
            self.actor,
            action,
            args,
            result,
            reasoning=reasoning,
            impact=impact,
            refs={"task": task_id, "agent": subjects.hosted_agent(self.agent)},
        )
        try:
            await self.bus.publish(subjects.audit(self.actor), rec)
        except Exception:
            log.warning("could not publish audit record", exc_info=True)


def agent_tools(agent: str, section: RunnerSection, bus: ApiBus) -> AgentTools | None:
    """The tools of agent `agent` as `section` lists them; None when it has none."""
    if not section.tools:
        return None
    return AgentTools(agent, section.tools, bus, section.fleet_api_timeout_s)
