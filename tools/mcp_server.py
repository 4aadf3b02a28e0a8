"""The MCP server (`fleet mcp`, stdio): the fleet's operations as MCP tools.

Built on the official SDK's low-level `Server`, so each tool's input schema is
exactly the JSON Schema of its fleet.api request type (`contracts.api`), not a
second definition written as a Python signature. Tool names map to operations
through `contracts.api.tools.MCP_TOOLS`. Each call is validated against the
request type here, then goes through `fleet.api.*` on NATS, so money still
passes the cost-guard (provision_gpu and destroy_gpu_instance answer with its
verdict). The NATS URL comes from --nats, FLEET_NATS_URL or `.fleet/nats.url`,
as for every verb.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import mcp_types as types
import msgspec
import nats
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from nats.aio.client import Client

from contracts.api.ops import op
from contracts.api.tools import MCP_TOOLS, ToolArgsError, input_schema, tool_request
from services.kit.config import resolve_nats_url
from tools.natsops import identity

REQUESTER = "mcp"
INSTRUCTIONS = (
    "Operate a GPU fleet: stats, offers, placement, provisioning (judged by a cost-guard "
    "against a hard budget), release and idle cleanup."
)


class FleetLink:
    """A lazily opened NATS connection and fleet.api calls over it."""

    def __init__(self, url: str | None, timeout_s: float = 20.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._nc: Client | None = None

    async def nc(self) -> Client:
        if self._nc is None or self._nc.is_closed:
            self._nc = await nats.connect(
                resolve_nats_url(self.url),
                name="fleet-mcp",
                connect_timeout=3,
                error_cb=_log_nats_error,
                **identity(),  # the operator's, under `fleet up --secure`
            )
        return self._nc

    async def api(self, name: str, request: Any) -> dict[str, Any]:
        """The fleet.api answer; a clear error dict when NATS or the service is not there."""
        try:
            nc = await self.nc()
        except Exception as exc:
            return _error(503, f"cannot reach NATS ({exc or type(exc).__name__}); run `fleet up`")
        body = {k: v for k, v in msgspec.to_builtins(request).items() if v is not None}
        try:
            reply = await nc.request(
                op(name).subject, msgspec.json.encode(body), timeout=self.timeout_s
            )
        except Exception as exc:
            return _error(
                503,
                f"fleet.api.{name} did not answer ({type(exc).__name__}); "
                "is its service running? (`fleet status`)",
            )
        answer = msgspec.json.decode(reply.data)
        return answer if isinstance(answer, dict) else {"result": answer}


def tool_list() -> list[types.Tool]:
    """Every MCP tool, generated from its operation."""
    tools = []
    for name, op_name in MCP_TOOLS.items():
        operation = op(op_name)
        tools.append(
            types.Tool(
                name=name,
                description=operation.description,
                input_schema=input_schema(operation),
                annotations=types.ToolAnnotations(
                    read_only_hint=operation.read_only, destructive_hint=operation.destructive
                ),
            )
        )
    return tools


async def _log_nats_error(exc: Exception) -> None:
    """A NATS error as one line on stderr (stdout is the MCP channel), no traceback."""
    print(f"fleet mcp: nats: {exc or type(exc).__name__}", file=sys.stderr)


def _error(code: int, message: str) -> dict[str, Any]:
    """An error in the shape every fleet.api operation answers with (`ApiError`), so a
    caller reads one shape whether the server or the operation refused."""
    return {"error": {"code": code, "message": message}}


def _result(answer: dict[str, Any], is_error: bool) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=json.dumps(answer, default=str))],
        structured_content=answer,
        is_error=is_error,
    )


def build_server(url: str | None = None) -> Server[Any]:
    """The MCP server with every fleet tool registered."""
    link = FleetLink(url)
    listed = tool_list()

    async def list_tools(
        _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=listed)

    async def call_tool(
        _ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        op_name = MCP_TOOLS.get(params.name)
        if op_name is None:
            known = ", ".join(MCP_TOOLS)
            return _result(_error(404, f"no tool named {params.name!r}; tools: {known}"), True)
        try:
            request = tool_request(op(op_name), params.arguments, REQUESTER)
        except ToolArgsError as exc:
            return _result(_error(400, f"invalid arguments for {params.name}: {exc}"), True)
        answer = await link.api(op_name, request)
        failed = "error" in answer or (op(op_name).fails_unless_ok and answer.get("ok") is False)
        return _result(answer, failed)

    return Server(
        "fleetplane",
        version="0.1.0",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


async def _serve(url: str | None) -> None:
    server = build_server(url)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def serve(url: str | None = None) -> int:
    """Run the server on stdio until the client closes it."""
    anyio.run(_serve, url)
    return 0
