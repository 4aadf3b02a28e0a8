"""Requests of the `fleet.api.<op>` operations, with their limits in the types.

The brain, the MCP server, the CLI and outside systems send these; the owning
service decodes them, so a value outside a limit is a 400 before any handler
runs. The tool schemas of the brain and the MCP server are generated from
these types, so a limit changed here changes everywhere at once.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from contracts.base import Text, Token, Usd
from contracts.commands import MAX_COUNT
from contracts.events import UnitState

GpuModel = Annotated[str, Meta(min_length=1, max_length=64, description="GPU model, e.g. H100")]
WaitS = Annotated[float, Meta(ge=0, le=120, description="seconds to wait for the verdict")]
UnitCountArg = Annotated[int, Meta(ge=1, le=MAX_COUNT, description="units")]


class NoArgs(msgspec.Struct, frozen=True, kw_only=True):
    """An operation without arguments (`budget`, `scaling`); send `{}`."""


class PoolQuery(msgspec.Struct, frozen=True, kw_only=True):
    """`stats`, `report`, `pools`: every pool, or one."""

    pool: Token | None = None


class HealthQuery(msgspec.Struct, frozen=True, kw_only=True):
    """`health`."""

    wait_s: Annotated[float, Meta(ge=0.05, le=10)] = 0.5
    """How long to collect `$SRV.PING` answers, seconds."""


class UnitsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """`units.list`: filters, every one optional."""

    pool: Token | None = None
    provider: Token | None = None
    state: UnitState | None = None


class ProvisionCall(msgspec.Struct, frozen=True, kw_only=True):
    """`provision`: ask for units; answered with the cost-guard's verdict."""

    pool: Token
    gpu_model: GpuModel = "any"
    count: UnitCountArg = 1
    provider: Token | None = None
    max_usd_per_hour: Usd | None = None
    """Ceiling on one unit's price, USD/hour."""
    reason: Text = ""
    requester: Token = "api"
    wait_s: WaitS = 10.0
    """How long to wait for the verdict before answering `pending`, seconds."""


class ReleaseCall(msgspec.Struct, frozen=True, kw_only=True):
    """`release`: remove one unit, or `count` of a pool's idlest; one of them is required."""

    pool: Token
    unit: Token | None = None
    count: UnitCountArg | None = None
    reason: Text = ""
    requester: Token = "api"
    wait_s: WaitS = 10.0

    def __post_init__(self) -> None:
        # Destructive: nothing is released unless the caller said which or how many.
        if self.unit is None and self.count is None:
            raise ValueError("name a `unit` or a `count` of units to release")


class CleanupIdleCall(msgspec.Struct, frozen=True, kw_only=True):
    """`cleanup_idle`: release ready units idle for at least `idle_s` (required: it is
    destructive, so the threshold is never assumed)."""

    idle_s: Annotated[float, Meta(ge=0, le=30 * 86400, description="idle threshold, seconds")]
    pool: Token | None = None
    dry_run: bool = False
    requester: Token = "api"


__all__ = [
    "CleanupIdleCall",
    "HealthQuery",
    "NoArgs",
    "PoolQuery",
    "ProvisionCall",
    "ReleaseCall",
    "UnitsQuery",
]
