"""The fleet.api operations as tools for a model: one name table, one schema generator.

The brain (Claude's tools) and the MCP server (`fleet mcp`) expose the same
operations under names their users already know. Only the names live here;
the fields, limits and descriptions come from the operation's request Struct
and row in `contracts.api.ops`, so the two tool lists cannot drift apart.
"""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.api.ops import Op, op

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
