"""`fleet mcp` as Claude Desktop would run it: a subprocess on stdio, driven by the
official MCP client with the GPU-agent guide's tool names and argument names,
answering from a running stack through fleet.api."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import msgspec
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from nats.aio.client import Client as Nats

from contracts.events import Alert
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
    "send_alert",
    "schedule_followup",
    "create_agent",
    "list_agents",
    "delete_agent",
    "plan_batch",
    "run_batch",
    "batch_status",
}


def _payload(result: object) -> dict[str, object]:
    structured = getattr(result, "structured_content", None)
    if structured:
        return dict(structured.get("result", structured))
    text = result.content[0].text  # type: ignore[attr-defined]
    return dict(json.loads(text))


def _gateway(nats_url: str, tmp_path: Path) -> Gateway:
    overrides = {
        "store": {"dir": str(tmp_path)},
        "pools": {"llm": {"gpu_model": "L40S", "providers": ["sim"]}},
    }
    return Gateway(load_settings(GatewaySettings, env={}, overrides=overrides), nats_url=nats_url)


async def test_fleet_mcp_serves_the_guides_tools_with_the_guides_argument_names(
    nats_url: str, nc: Nats, tmp_path: Path
) -> None:
    owners = await FakeFleetOwners(nc).start()
    gw = _gateway(nats_url, tmp_path)
    await gw.start()
    alerts = await nc.subscribe("fleet.alert.>")
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "tools", "mcp", "--nats", nats_url]
    )
    try:
        async with Client(params) as client:
            listed = await client.list_tools()
            by_name = {t.name: t for t in listed.tools}
            assert set(by_name) == TOOLS
            schema = by_name["provision_gpu"].input_schema
            assert schema["required"] == ["gpu_model"]
            assert {"gpu_model", "provider", "duration", "count"} <= set(schema["properties"])
            assert schema["properties"]["count"]["maximum"] == 1000
            assert set(by_name["destroy_gpu_instance"].input_schema["required"]) == {
                "provider",
                "instance_id",
            }
            cleanup = by_name["cleanup_idle_gpus"].input_schema["properties"]
            assert cleanup["idle_threshold_minutes"]["default"] == 30

            units = _payload(await client.call_tool("list_gpu_instances", {"pool": "llm"}))
            assert [u["unit"] for u in units["units"]] == ["u-idle", "u-busy"]

            # The model a pool runs goes to that pool; another model to its ad-hoc pool.
            verdict = _payload(
                await client.call_tool("provision_gpu", {"gpu_model": "L40S", "count": 2})
            )
            assert verdict["decision"] == "approved"
            sent = owners.requests[-1]
            assert sent.requester == "mcp" and sent.pool == "llm" and sent.pin
            assert sent.duration_s is None  # until released
            two_hours = _payload(
                await client.call_tool(
                    "provision_gpu",
                    {"gpu_model": "A100", "provider": "sim", "duration": 7200, "count": 2},
                )
            )
            assert two_hours["decision"] == "approved"
            sent = owners.requests[-1]
            assert (sent.pool, sent.count, sent.duration_s) == ("adhoc-a100", 2, 7200.0)
            denied = _payload(
                await client.call_tool("provision_gpu", {"gpu_model": "H100", "count": 50})
            )
            assert denied["decision"] == "denied"

            # The provider's own id names the instance; ours is released.
            gone = _payload(
                await client.call_tool(
                    "destroy_gpu_instance", {"provider": "sim", "instance_id": "sim-7002"}
                )
            )
            assert gone["decision"] == "approved" and owners.requests[-1].unit == "u-busy"
            missing = await client.call_tool(
                "destroy_gpu_instance", {"provider": "sim", "instance_id": "sim-9999"}
            )
            assert missing.is_error and "sim-7001" in missing.content[0].text

            # The threshold in minutes is honoured: 60 min finds the 2 h idle unit only.
            dry = _payload(
                await client.call_tool(
                    "cleanup_idle_gpus", {"idle_threshold_minutes": 60, "dry_run": True}
                )
            )
            assert [u["unit"] for u in dry["idle"]] == ["u-idle"]
            offers = _payload(
                await client.call_tool(
                    "get_available_gpus", {"vendor": "NVIDIA", "tier": "high_end"}
                )
            )
            assert offers["offers"]

            sent_alert = _payload(
                await client.call_tool(
                    "send_alert",
                    {"severity": "critical", "message": "vast-ai-12345 failed over", "unit": "u1"},
                )
            )
            assert sent_alert["subject"] == "fleet.alert.critical"
            got = msgspec.json.decode((await alerts.next_msg(timeout=5)).data, type=Alert)
            assert got.severity == "critical" and "vast-ai-12345" in got.message

            # Health with services missing is a failure the client sees as one.
            health = await client.call_tool("get_health_status", {"wait_s": 0.2})
            assert health.is_error and _payload(health)["ok"] is False

            # A wrong argument name is an error naming it, never a silent default.
            before = len(owners.requests)
            wrong = await client.call_tool("cleanup_idle_gpus", {"idle_minutes": 1})
            assert wrong.is_error and "idle_minutes" in wrong.content[0].text
            wrong = await client.call_tool("provision_gpu", {"gpu": "H100"})
            assert wrong.is_error and "'gpu'" in wrong.content[0].text
            bad = await client.call_tool("provision_gpu", {"gpu_model": "H100", "count": 0})
            assert bad.is_error
            # One error shape, the operations' own, whoever refused.
            assert _payload(wrong)["error"]["code"] == 400
            assert _payload(missing)["error"]["code"] == 404
            assert len(owners.requests) == before
    finally:
        await alerts.unsubscribe()
        await gw.stop()
        await owners.stop()
