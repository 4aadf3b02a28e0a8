"""Requests of the gateway's fleet.api composites (`fleet.api.provision|release|cleanup_idle`).

The brain, the MCP server, the CLI and outside systems send these; the gateway
turns them into commands for the cost-guard and answers with its verdict.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from contracts.base import Text, Token, Usd
from contracts.commands import MAX_COUNT

GpuModel = Annotated[str, Meta(min_length=1, max_length=64)]


class ProvisionCall(msgspec.Struct, frozen=True, kw_only=True):
    """`fleet.api.provision`: ask for units; answered with the cost-guard's verdict."""

    pool: Token
    gpu_model: GpuModel = "any"
    count: Annotated[int, Meta(ge=1, le=MAX_COUNT)] = 1
    provider: Token | None = None
    max_usd_per_hour: Usd | None = None
    """Ceiling on one unit's price, USD/hour."""
    reason: Text = ""
    requester: Token = "api"
    wait_s: Annotated[float, Meta(ge=0, le=120)] = 10.0
    """How long to wait for the verdict before answering `pending`, seconds."""


class ReleaseCall(msgspec.Struct, frozen=True, kw_only=True):
    """`fleet.api.release`: remove one unit, or `count` of a pool's idlest."""

    pool: Token
    unit: Token | None = None
    count: Annotated[int, Meta(ge=1, le=MAX_COUNT)] | None = None
    reason: Text = ""
    requester: Token = "api"
    wait_s: Annotated[float, Meta(ge=0, le=120)] = 10.0


class CleanupIdleCall(msgspec.Struct, frozen=True, kw_only=True):
    """`fleet.api.cleanup_idle`: release ready units idle for at least `idle_s`."""

    idle_s: Annotated[float, Meta(ge=0, le=30 * 86400)] = 1800.0
    """Idle threshold, seconds (30 minutes by default)."""
    pool: Token | None = None
    dry_run: bool = False
    requester: Token = "api"


class StatsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """`fleet.api.stats` / `report`: every pool, or one."""

    pool: Token | None = None


class HealthQuery(msgspec.Struct, frozen=True, kw_only=True):
    """`fleet.api.health`."""

    wait_s: Annotated[float, Meta(ge=0.05, le=10)] = 0.5
    """How long to collect `$SRV.PING` answers, seconds."""
