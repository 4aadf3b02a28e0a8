"""The fleet.api operations as tools for a model: one name table, one schema generator.

The brain (Claude's tools) and the MCP server (`fleet mcp`) expose the same
operations under names their users already know. Only the names live here;
the fields, limits and descriptions come from the operation's request Struct
and row in `contracts.api.ops`, so the two tool lists cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from contracts.api.ops import Op, op
from contracts.events import AuditRecord

MCP_TOOLS: dict[str, str] = {
    "provision_gpu": "gpu.provision",
    "get_gpu_stats": "stats",
    "list_gpu_instances": "units.list",
    "destroy_gpu_instance": "gpu.destroy",
    "cleanup_idle_gpus": "gpu.cleanup_idle",
    "get_health_status": "health",
    "get_available_gpus": "gpus.available",
    "place_workload": "place",
    "get_budget": "budget",
    "submit_job": "jobs.submit",
    "queue_status": "jobs.queue",
    "list_jobs": "jobs.list",
    "get_job": "jobs.get",
    "cancel_job": "jobs.cancel",
    "send_alert": "alert",
    "schedule_followup": "followup.schedule",
    "create_agent": "agents.create",
    "list_agents": "agents.list",
    "delete_agent": "agents.delete",
    # batches (contracts.batch)
    "plan_batch": "batch.plan",
    "run_batch": "batch.run",
    "batch_status": "batch.status",
}
"""The MCP server's tool name -> operation: the GPU-agent guide's names and arguments."""

BRAIN_TOOLS: dict[str, str] = {
    **{k: v for k, v in MCP_TOOLS.items() if not v.startswith("agents.")},
    "release": "release",
    "report": "fleet_report",
}
"""The brain's tool name -> operation: the guide's tools, as the MCP server has them
(not the hosted-agent ones: agents are created by people), plus releasing a count of a
pool's idlest units and the report of the last days (history, spend, recommendations)."""

HOSTED_AGENT_TOOLS: frozenset[str] = frozenset(
    k for k, v in MCP_TOOLS.items() if not v.startswith("agents.")
)
"""Fleet tools a hosted agent may be given (their MCP names): the guide's, not the ones
that make or remove agents."""

SET_BY_CALLER: frozenset[str] = frozenset({"requester"})
"""Request fields the tool host fills in (who is asking), never the model."""


class ToolArgsError(ValueError):
    """Tool arguments that fail the operation's request type; the message says which."""


def input_schema(operation: Op) -> dict[str, Any]:
    """The JSON Schema of a tool's arguments: the request Struct's, inlined at the root,
    without the fields the host sets."""
    schema = msgspec.json.schema(operation.request)
    defs: dict[str, Any] = dict(schema.get("$defs", {}))
    body: dict[str, Any] = dict(defs.pop(operation.request.__name__, schema))
    body.pop("title", None)
    body.pop("description", None)  # the tool's description says it, from the op
    body["type"] = "object"
    body["additionalProperties"] = False
    body["properties"] = {
        k: v for k, v in body.get("properties", {}).items() if k not in SET_BY_CALLER
    }
    required = [k for k in body.get("required", []) if k not in SET_BY_CALLER]
    if required:
        body["required"] = required
    else:
        body.pop("required", None)
    if defs:
        body["$defs"] = defs
    return body


def tool_spec(name: str, table: dict[str, str]) -> dict[str, Any]:
    """`{name, description, input_schema}` of one tool of `table`."""
    operation = op(table[name])
    return {
        "name": name,
        "description": operation.description,
        "input_schema": input_schema(operation),
    }


def tool_request(operation: Op, args: Any, requester: str) -> Any:
    """The operation's typed request from a tool call's arguments, as `requester`.

    The model may not choose who it is: a `requester` argument is overwritten.
    """
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ToolArgsError(f"arguments must be an object, not {type(args).__name__}")
    body = dict(args)
    fields = {f.name for f in msgspec.structs.fields(operation.request)}
    # A misspelt argument must not silently fall back to a default (a threshold, a count).
    unknown = sorted(k for k in body if k not in fields)
    if unknown:
        allowed = ", ".join(sorted(fields - SET_BY_CALLER)) or "none"
        names = ", ".join(map(repr, unknown))
        raise ToolArgsError(f"unknown argument(s) {names}; allowed: {allowed}")
    for key in SET_BY_CALLER & fields:
        body[key] = requester
    try:
        return msgspec.convert(body, operation.request)
    except msgspec.ValidationError as exc:
        raise ToolArgsError(str(exc)) from None


def unknown_tools(names: Sequence[str]) -> list[str]:
    """The names in `names` no hosted agent may be given (see HOSTED_AGENT_TOOLS)."""
    return sorted(set(names) - HOSTED_AGENT_TOOLS)


def tools_problem(names: Sequence[str]) -> str | None:
    """What is wrong with a hosted agent's tool list, naming the tools it may have; None
    when every name is one of them."""
    bad = unknown_tools(names)
    if not bad:
        return None
    return f"unknown tool(s) {', '.join(bad)}; allowed: {', '.join(sorted(HOSTED_AGENT_TOOLS))}"


def request_body(request: Any) -> dict[str, Any]:
    """The fleet.api request body of a validated call (unset optional fields left out)."""
    return {k: v for k, v in msgspec.to_builtins(request).items() if v is not None}


def call_failed(operation: Op, result: Mapping[str, Any]) -> bool:
    """Whether an answered call failed: an error reply, or `ok: false` from an operation
    that reports a failure that way (health), so the model sees `is_error`."""
    return "error" in result or (operation.fails_unless_ok and result.get("ok") is False)


def cost_impact(operation: Op, result: Mapping[str, Any]) -> float:
    """USD/hour by which an answered call changed the fleet's burn, for its audit record:
    an approved provision adds its price, an approved release or destroy takes it off,
    a cleanup what it saved."""
    approved = result.get("decision") == "approved"
    if operation.costs_money and approved:
        return float(result.get("usd_per_hour", 0.0))
    if operation.destructive and approved:
        return -abs(float(result.get("usd_per_hour", 0.0)))
    if "saved_usd_per_hour" in result:
        return -float(result.get("saved_usd_per_hour", 0.0))
    return 0.0


def _short(obj: Any, limit: int = 3500) -> str:
    text = json.dumps(obj, default=str, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 20] + "...(truncated)"


def call_record(
    actor: str,
    action: str,
    args: Any,
    result: Any,
    *,
    reasoning: str = "",
    impact: float = 0.0,
    refs: dict[str, str] | None = None,
) -> AuditRecord:
    """The AuditRecord of one tool call by `actor`: what it asked, why, and what came back."""
    return AuditRecord(
        actor=actor,
        action=action[:128],
        reasoning=(reasoning or "(no reasoning stated)")[:4000],
        result=_short({"arguments": args, "result": result}),
        cost_impact_usd_per_hour=round(impact, 6),
        refs=refs or {},
    )
