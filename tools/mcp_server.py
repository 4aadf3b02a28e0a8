"""The MCP server (`fleet mcp`, stdio): the fleet's operations as MCP tools.

Built on the official SDK's `MCPServer`. Each tool is a typed function, so its
input JSON Schema comes from the signature; each goes through `fleet.api.*`
on NATS, so money still passes the cost-guard (provision_gpu and
destroy_gpu_instance answer with its verdict). The NATS URL comes from
--nats, FLEET_NATS_URL or `.fleet/nats.url`, as for every verb.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
import nats
from mcp.server.mcpserver import MCPServer
from nats.aio.client import Client
from pydantic import Field

from contracts import subjects
from services.kit.config import resolve_nats_url

REQUESTER = "mcp"

PoolName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,128}$", description="pool name")]
UnitState = Literal["requested", "booting", "ready", "draining", "terminated", "failed"]


class FleetLink:
    """A lazily opened NATS connection and fleet.api calls over it."""

    def __init__(self, url: str | None, timeout_s: float = 20.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._nc: Client | None = None

    async def nc(self) -> Client:
        if self._nc is None or self._nc.is_closed:
            self._nc = await nats.connect(
                resolve_nats_url(self.url), name="fleet-mcp", connect_timeout=3
            )
        return self._nc

    async def api(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        """The fleet.api answer; a clear error dict when NATS or the service is not there."""
        try:
            nc = await self.nc()
        except Exception as exc:
            return {"error": f"cannot reach NATS ({exc or type(exc).__name__}); run `fleet up`"}
        clean = {k: v for k, v in body.items() if v is not None}
        try:
            reply = await nc.request(
                subjects.api(op), msgspec.json.encode(clean), timeout=self.timeout_s
            )
        except Exception as exc:
            return {
                "error": f"fleet.api.{op} did not answer ({type(exc).__name__}); "
                "is its service running? (`fleet status`)"
            }
        answer: dict[str, Any] = msgspec.json.decode(reply.data)
        return answer


def build_server(url: str | None = None) -> MCPServer:
    """The MCP server with every fleet tool registered."""
    link = FleetLink(url)
    server: MCPServer = MCPServer(
        name="fleetplane",
        instructions="Operate a GPU fleet: stats, offers, placement, provisioning (judged by a "
        "cost-guard against a hard budget), release and idle cleanup.",
        version="0.1.0",
    )

    @server.tool(
        description="Ask for GPU units in a pool; answered with the cost-guard's verdict "
        "(approved, denied, held for a person, or pending)."
    )
    async def provision_gpu(
        pool: PoolName,
        gpu_model: Annotated[
            str,
            Field(min_length=1, max_length=64, description="GPU model, e.g. H100, A100-80GB, L40S"),
        ] = "any",
        count: Annotated[int, Field(ge=1, le=1000, description="units to add")] = 1,
        provider: Annotated[str | None, Field(description="only this provider")] = None,
        max_usd_per_hour: Annotated[
            float | None, Field(gt=0, description="price cap per unit, USD/h")
        ] = None,
        reason: Annotated[str, Field(max_length=2000)] = "",
    ) -> dict[str, Any]:
        return await link.api(
            "provision",
            {
                "pool": pool,
                "gpu_model": gpu_model,
                "count": count,
                "provider": provider,
                "max_usd_per_hour": max_usd_per_hour,
                "reason": reason,
                "requester": REQUESTER,
            },
        )

    @server.tool(
        description="Per-pool ready/pending units, utilization, in-flight, queue, USD/h; "
        "today's spend and budget."
    )
    async def get_gpu_stats(pool: PoolName | None = None) -> dict[str, Any]:
        return await link.api("stats", {"pool": pool})

    @server.tool(description="GPU instances (units), filtered by pool, provider or state.")
    async def list_gpu_instances(
        pool: PoolName | None = None,
        provider: str | None = None,
        state: UnitState | None = None,
    ) -> dict[str, Any]:
        return await link.api("units.list", {"pool": pool, "provider": provider, "state": state})

    @server.tool(description="Release one GPU instance (through the cost-guard).")
    async def destroy_gpu_instance(
        pool: PoolName,
        unit: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,128}$", description="unit id")],
        reason: Annotated[str, Field(max_length=2000)] = "",
    ) -> dict[str, Any]:
        return await link.api(
            "release",
            {
                "pool": pool,
                "unit": unit,
                "reason": reason or "destroyed via MCP",
                "requester": REQUESTER,
            },
        )

    @server.tool(description="Release ready GPU instances idle for at least `idle_minutes`.")
    async def cleanup_idle_gpus(
        idle_minutes: Annotated[float, Field(ge=0, le=43200)] = 30.0,
        pool: PoolName | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        return await link.api(
            "cleanup_idle",
            {
                "idle_s": idle_minutes * 60.0,
                "pool": pool,
                "dry_run": dry_run,
                "requester": REQUESTER,
            },
        )

    @server.tool(description="Services answering, circuit breakers and stream lag.")
    async def get_health_status() -> dict[str, Any]:
        return await link.api("health", {})

    @server.tool(description="Live GPU offers across providers, cheapest first.")
    async def get_available_gpus(
        gpu_model: str | None = None,
        min_vram_gb: Annotated[float | None, Field(ge=0)] = None,
        vendor: Literal["NVIDIA", "AMD", "Intel", "Apple", "other"] | None = None,
        tier: Literal["enterprise", "high_end", "mid_range", "budget", "cpu"] | None = None,
        max_usd_per_hour: Annotated[float | None, Field(ge=0)] = None,
        provider: str | None = None,
    ) -> dict[str, Any]:
        return await link.api(
            "gpus.available",
            {
                "gpu_model": gpu_model,
                "min_vram_gb": min_vram_gb,
                "vendor": vendor,
                "tier": tier,
                "max_usd_per_hour": max_usd_per_hour,
                "provider": provider,
            },
        )

    @server.tool(
        description="Where a workload needing `min_vram_gb` GB of VRAM should run, "
        "with alternatives and the reasoning."
    )
    async def place_workload(
        min_vram_gb: Annotated[float, Field(ge=0, le=10000, description="VRAM per card, GB")],
        gpu_model: str | None = None,
        vendor: str | None = None,
        max_usd_per_hour: Annotated[float | None, Field(ge=0)] = None,
        provider: str | None = None,
    ) -> dict[str, Any]:
        return await link.api(
            "place",
            {
                "min_vram_gb": min_vram_gb,
                "gpu_model": gpu_model,
                "vendor": vendor,
                "max_usd_per_hour": max_usd_per_hour,
                "provider": provider,
            },
        )

    @server.tool(description="Today's spend, budget, burn rate and requests held for a person.")
    async def get_budget() -> dict[str, Any]:
        return await link.api("budget", {})

    return server


def serve(url: str | None = None) -> int:
    """Run the server on stdio until the client closes it."""
    build_server(url).run("stdio")
    return 0
