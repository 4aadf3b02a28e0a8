"""fleet.api as one contract: the brain's and the MCP server's tools are the contract's
operations (same fields, same limits), destructive operations need explicit arguments,
and on a fresh `fleet up` every operation answers in its contract's reply shape, health
included."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from nats.aio.client import Client as Nats

from contracts.api import OPS, ApiError, op
from contracts.api.replies import CleanupReply, CommandAnswer, HealthReply
from contracts.api.tools import BRAIN_TOOLS, MCP_TOOLS
from contracts.commands import MAX_COUNT
from services.brain.tools import TOOLS as BRAIN
from services.gateway.service import Gateway, GatewaySettings
from services.kit.config import load_settings
from tests import test_cli_up as up
from tests.fakes.fleet_api import FakeFleetOwners
from tests.test_mcp import TOOLS as MCP_NAMES
from tools.registry import EMBEDDED, available

fleet_up = up.fleet_up  # `fleet up` in a temp dir, stopped with Ctrl-C after the test

AGENT_TOOLS = {"create_agent", "list_agents", "delete_agent"}
BRAIN_NAMES = (MCP_NAMES - AGENT_TOOLS) | {"release", "report"}
"""The guide's tools, as MCP has them (hosted agents are made by people, not the brain),
plus a pool release by count and the report."""


def contract_fields(op_name: str) -> tuple[dict[str, Any], set[str]]:
    """The request type's properties (with their limits) and required names, straight from
    msgspec, less `requester` (the tool host says who it is, never the model)."""
    request = op(op_name).request
    schema = msgspec.json.schema(request)
    body = schema.get("$defs", {}).get(request.__name__, schema)
    props = {k: v for k, v in body.get("properties", {}).items() if k != "requester"}
    return props, set(body.get("required", [])) - {"requester"}


def assert_tool_is_op(tool: str, op_name: str, description: str, schema: dict[str, Any]) -> None:
    props, required = contract_fields(op_name)
    assert description == op(op_name).description, tool
    assert schema["type"] == "object", tool
    assert schema.get("properties", {}) == props, f"{tool} differs from fleet.api.{op_name}"
    assert set(schema.get("required", [])) == required, tool


async def test_brain_tools_mcp_tools_and_the_contract_are_the_same_operations(
    nats_url: str,
) -> None:
    brain = {t.name: t.spec() for t in BRAIN}
    assert set(brain) == BRAIN_NAMES
    for name, spec in brain.items():
        assert_tool_is_op(name, BRAIN_TOOLS[name], spec["description"], spec["input_schema"])

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "tools", "mcp", "--nats", nats_url]
    )
    async with Client(params) as client:
        listed = (await client.list_tools()).tools
    mcp = {t.name: t for t in listed}
    assert set(mcp) == set(MCP_TOOLS)
    for name, t in mcp.items():
        assert_tool_is_op(name, MCP_TOOLS[name], t.description or "", t.input_schema)
        assert t.annotations is not None
        assert t.annotations.destructive_hint == op(MCP_TOOLS[name]).destructive
        assert t.annotations.read_only_hint == op(MCP_TOOLS[name]).read_only
    # A host may run a read-only tool without asking: none that spends, pages or stores is.
    writers = {"provision_gpu", "create_agent", "send_alert", "schedule_followup", "submit_job"}
    assert {n for n, t in mcp.items() if t.annotations and not t.annotations.read_only_hint} >= (
        writers
    )
    assert (
        mcp["get_health_status"].annotations and mcp["get_health_status"].annotations.read_only_hint
    )

    # The same operation has the same schema in both, limits included.
    for mcp_name, op_name in MCP_TOOLS.items():
        for brain_name in (b for b, o in BRAIN_TOOLS.items() if o == op_name):
            assert mcp[mcp_name].input_schema == brain[brain_name]["input_schema"]
    # Every operation a tool names exists; provisioning's count limit is the contract's.
    assert set(BRAIN_TOOLS.values()) | set(MCP_TOOLS.values()) <= {o.name for o in OPS}
    assert mcp["provision_gpu"].input_schema["properties"]["count"]["maximum"] == MAX_COUNT


async def _raw(nc: Nats, op_name: str, data: bytes, wait_s: float = 10) -> dict[str, Any]:
    reply = await nc.request(op(op_name).subject, data, timeout=wait_s)
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


async def test_destructive_operations_need_explicit_arguments_and_empty_bodies_are_errors(
    nats_url: str, nc: Nats, tmp_path: Path
) -> None:
    owners = await FakeFleetOwners(nc).start()
    gw = Gateway(
        load_settings(GatewaySettings, env={}, overrides={"store": {"dir": str(tmp_path)}}),
        nats_url=nats_url,
    )
    await gw.start()
    try:
        for op_name in ("cleanup_idle", "release", "provision", "stats", "health"):
            refused = msgspec.convert(await _raw(nc, op_name, b""), ApiError)
            assert refused.error.code == 400
            assert "empty request" in refused.error.message
        # Not UTF-8, so not JSON: the same clear 400, not an empty reply.
        garbled = await _raw(nc, "provision", b'{"pool": "llm", "gpu_model": "\xff\xfe"}')
        assert msgspec.convert(garbled, ApiError).error.code == 400
        assert "bad request" in garbled["error"]["message"]
        no_threshold = msgspec.convert(await _raw(nc, "cleanup_idle", b"{}"), ApiError)
        assert no_threshold.error.code == 400 and "idle_s" in no_threshold.error.message
        no_unit = msgspec.convert(await _raw(nc, "release", b'{"pool": "llm"}'), ApiError)
        assert no_unit.error.code == 400 and "unit" in no_unit.error.message
        assert owners.requests == []

        # Nothing was released: the idle unit is still there, and an explicit call works.
        dry = await _raw(nc, "cleanup_idle", b'{"idle_s": 1800, "dry_run": true}')
        listed = msgspec.convert(dry, CleanupReply)
        assert [u.unit for u in listed.idle] == ["u-idle"] and listed.released == []
        assert owners.requests == []
        done = msgspec.convert(await _raw(nc, "cleanup_idle", b'{"idle_s": 1800}'), CleanupReply)
        assert [v.decision for v in done.released] == ["approved"]
        assert [r.unit for r in owners.requests] == ["u-idle"]  # type: ignore[union-attr]

        verdict = await _raw(nc, "provision", b'{"pool": "llm", "gpu_model": "L40S"}')
        assert msgspec.convert(verdict, CommandAnswer).decision == "approved"
    finally:
        await gw.stop()
        await owners.stop()


def test_fresh_fleet_up_answers_health_and_every_operation_in_its_contract_shape(
    fleet_up: tuple[subprocess.Popen[str], up.Lines, Path],
) -> None:
    _proc, lines, cwd = fleet_up
    lines.wait_for("services ready", 90)
    url = (cwd / ".fleet" / "nats.url").read_text().strip()
    running = set(available(EMBEDDED))

    async def ask_all() -> dict[str, Any]:
        import nats

        nc = await nats.connect(url)
        try:
            bodies = {o.name: b"{}" for o in OPS if not (o.destructive or o.costs_money)}
            bodies["cleanup_idle"] = b'{"idle_s": 1800, "dry_run": true}'
            bodies["place"] = b'{"min_vram_gb": 16}'
            submitted = await _raw(nc, "jobs.submit", b'{"est_s": 0.1, "priority": "high"}')
            msgspec.convert(submitted, op("jobs.submit").reply)
            bodies["jobs.get"] = json.dumps({"id": submitted["id"]}).encode()
            # Operations whose arguments are required, with harmless ones.
            bodies["alert"] = b'{"message": "fresh fleet check", "severity": "info"}'
            bodies["followup.schedule"] = b'{"check": "fresh fleet check", "after_minutes": 60}'
            bodies["agents.create"] = b'{"name": "fresh", "user": "t", "system_prompt": "hi"}'
            bodies["batch.plan"] = b'{"items": 100, "per_item_s": 18, "gpu_models": ["H100"]}'
            # agents.create answers once the agent's own runner (a local process) is ready
            answers = await asyncio.gather(*(_raw(nc, n, b, 90) for n, b in bodies.items()))
            return dict(zip(bodies, answers, strict=True))
        finally:
            await nc.close()

    answers = asyncio.run(ask_all())
    for name, answer in answers.items():
        assert "error" not in answer, f"fleet.api.{name}: {answer}"
        msgspec.convert(answer, op(name).reply)  # raises when the reply left its contract
    health = msgspec.convert(answers["health"], HealthReply)
    assert running <= set(health.services), health
    assert health.missing == []

    status = up.fleet(cwd, "status", "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)["health"]
    assert shown is not None and "error" not in shown, shown
    assert running <= set(shown["services"])
    text = up.fleet(cwd, "status")
    assert text.returncode == 0, text.stderr
    line = next(x for x in text.stdout.splitlines() if x.startswith("health:"))
    assert "failed" not in line and "no answer" not in line, line
