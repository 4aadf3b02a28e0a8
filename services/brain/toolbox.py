"""Carries out the model's (or the rule policy's) tool calls over fleet.api, behind the
guardrails, and audits every one on `fleet.audit.brain`."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import msgspec

from contracts import subjects
from contracts.api import ProvisionCall
from contracts.api.requests import GpuProvisionCall
from contracts.api.tools import call_failed, call_record, cost_impact, request_body
from services.brain.guard import Limits, TaskSpend, check_provision
from services.brain.tools import ACTOR, InvalidArgs, validate

log = logging.getLogger("fleet.brain")


class Bus(Protocol):
    """What the toolbox needs from the service."""

    async def api(self, op: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def publish(self, subject: str, msg: Any, *, msg_id: str | None = None) -> None: ...


class Toolbox:
    """One task's tool calls: validation, per-task limits, fleet.api, audit."""

    def __init__(self, bus: Bus, task_id: str, limits: Limits) -> None:
        self.bus = bus
        self.task_id = task_id
        self.limits = limits
        self.spent = TaskSpend()
        self.calls = 0
        self.refusals = 0

    async def call(self, name: str, args: Any, reasoning: str = "") -> tuple[dict[str, Any], bool]:
        """(result, is_error) of one tool call; every call is audited."""
        self.calls += 1
        try:
            tool, typed = validate(name, args)
        except InvalidArgs as exc:
            self.refusals += 1
            result: dict[str, Any] = {"error": f"refused: invalid arguments: {exc}"}
            await self.audit(f"refused.{name}"[:128], args, reasoning, result, 0.0)
            return result, True
        body = request_body(typed)
        if isinstance(typed, ProvisionCall | GpuProvisionCall):
            decision, price = await self._guard(typed)
            if not decision.allowed:
                self.refusals += 1
                result = {"error": decision.reason, "cheapest_usd_per_hour": price}
                await self.audit(f"refused.{name}", args, reasoning, result, 0.0)
                return result, True
            body["max_usd_per_hour"] = decision.max_usd_per_hour
        result = await self.bus.api(tool.op, body)
        await self.audit(name, args, reasoning, result, cost_impact(tool.operation, result))
        return result, call_failed(tool.operation, result)

    async def _guard(self, call: ProvisionCall | GpuProvisionCall) -> tuple[Any, float | None]:
        flt: dict[str, Any] = {}
        if call.gpu_model and call.gpu_model != "any":
            flt["gpu_model"] = call.gpu_model
        if call.provider:
            flt["provider"] = call.provider
        offers = await self.bus.api("gpus.available", flt)
        prices = [float(o.get("usd_per_hour", 0.0)) for o in offers.get("offers", [])]
        price = min(prices) if prices else call.max_usd_per_hour
        self.spent, decision = check_provision(
            self.spent, call.count, price, call.max_usd_per_hour, self.limits
        )
        return decision, price

    async def audit(
        self, action: str, args: Any, reasoning: str, result: Any, impact: float
    ) -> None:
        """Publish the AuditRecord of one action."""
        rec = call_record(
            ACTOR,
            action,
            args,
            result,
            reasoning=reasoning,
            impact=impact,
            refs={"task": self.task_id},
        )
        try:
            await self.bus.publish(subjects.audit(ACTOR), rec)
        except Exception:
            log.warning("could not publish audit record", exc_info=True)


def as_text(result: Any) -> str:
    """A tool result as the model reads it."""
    return msgspec.json.encode(result).decode()
