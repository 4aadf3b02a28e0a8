"""`fleet mcp` as Claude Desktop would run it: a subprocess on stdio, driven by the
official MCP client, answering from a running stack through fleet.api."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from nats.aio.client import Client as Nats

from services.gateway.service import Gateway, GatewaySettings
from services.kit.config import load_settings
from tests.fakes.fleet_api import FakeFleetOwners

TOOLS = {
    "provision_gpu",
    "get_gpu_stats",
    "list_gpu_instances",
    "destroy_gpu_instance",
    "cleanup_idle_gpus",
    "get_health_status",
    "get_available_gpus",
    "place_workload",
    "get_budget",
    "submit_job",
    "queue_status",
    "list_jobs",
    "get_job",
    "cancel_job",
}


def _payload(result: object) -> dict[str, object]:
    structured = getattr(result, "structured_content", None)
    if structured:
        return dict(structured.get("result", structured))
    text = result.content[0].text  # type: ignore[attr-defined]
    return dict(json.loads(text))


async def test_fleet_mcp_lists_its_tools_and_serves_them_from_the_stack(
    nats_url: str, nc: Nats, tmp_path: Path
) -> None:
    owners = await FakeFleetOwners(nc).start()
    gw = Gateway(
        load_settings(GatewaySettings, env={}, overrides={"store": {"dir": str(tmp_path)}}),
        nats_url=nats_url,
    )
    await gw.start()
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "tools", "mcp", "--nats", nats_url]
    )
    try:
        async with Client(params) as client:
            listed = await client.list_tools()
            by_name = {t.name: t for t in listed.tools}
            assert set(by_name) == TOOLS
            schema = by_name["provision_gpu"].input_schema
            assert schema["required"] == ["pool"]
            assert schema["properties"]["count"]["maximum"] == 1000

            units = _payload(await client.call_tool("list_gpu_instances", {"pool": "llm"}))
            assert [u["unit"] for u in units["units"]] == ["u-idle", "u-busy"]

            verdict = _payload(
                await client.call_tool(
                    "provision_gpu", {"pool": "llm", "gpu_model": "L40S", "count": 2}
                )
            )
            assert verdict["decision"] == "approved"
            assert owners.requests[-1].requester == "mcp"

            denied = _payload(
                await client.call_tool(
                    "provision_gpu", {"pool": "llm", "gpu_model": "H100", "count": 50}
                )
            )
            assert denied["decision"] == "denied"

            bad = await client.call_tool("provision_gpu", {"pool": "llm", "count": 0})
            assert bad.is_error
    finally:
        await gw.stop()
        await owners.stop()
