"""The brain's tools: names, descriptions, argument types (their JSON Schema is the
tool's input schema) and the fleet.api operation behind each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

Pool = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]
Gpu = Annotated[str, Meta(min_length=1, max_length=64)]
Why = Annotated[str, Meta(max_length=2000)]


class ListUnits(msgspec.Struct, kw_only=True):
    pool: Pool | None = None
    provider: Pool | None = None
    state: str | None = None


class GetStats(msgspec.Struct, kw_only=True):
    pool: Pool | None = None


class GetAvailableGpus(msgspec.Struct, kw_only=True):
    gpu_model: Gpu | None = None
    min_vram_gb: Annotated[float, Meta(ge=0, le=10_000)] | None = None
    vendor: str | None = None
    tier: str | None = None
    max_usd_per_hour: Annotated[float, Meta(ge=0, le=10_000)] | None = None
    provider: Pool | None = None


class PlaceWorkload(msgspec.Struct, kw_only=True):
    min_vram_gb: Annotated[float, Meta(ge=0, le=10_000)]
    gpu_model: Gpu | None = None
    vendor: str | None = None
    max_usd_per_hour: Annotated[float, Meta(ge=0, le=10_000)] | None = None
    provider: Pool | None = None
    runtime: Literal["cuda", "rocm", "metal", "any"] = "cuda"
    """What the model is built for; CUDA unless the user says otherwise, as `fleet place`."""


class Provision(msgspec.Struct, kw_only=True):
    pool: Pool
    gpu_model: Gpu = "any"
    count: Annotated[int, Meta(ge=1, le=1000)] = 1
    provider: Pool | None = None
    max_usd_per_hour: Annotated[float, Meta(gt=0, le=10_000)] | None = None
    reason: Why = ""


class Release(msgspec.Struct, kw_only=True):
    pool: Pool
    unit: Pool | None = None
    count: Annotated[int, Meta(ge=1, le=1000)] | None = None
    reason: Why = ""


class CleanupIdle(msgspec.Struct, kw_only=True):
    idle_minutes: Annotated[float, Meta(ge=0, le=43_200)] = 30.0
    pool: Pool | None = None
    dry_run: bool = False


class NoArgs(msgspec.Struct, kw_only=True):
    pass


@dataclass(frozen=True)
class Tool:
    """One tool the model may call."""

    name: str
    description: str
    args: type[Any]
    op: str
    """The fleet.api operation that answers it."""

    def input_schema(self) -> dict[str, Any]:
        """The JSON Schema of the arguments (inlined: no $ref)."""
        schema = msgspec.json.schema(self.args)
        defs = schema.get("$defs", {})
        body: dict[str, Any] = dict(defs.get(self.args.__name__, schema))
        body.pop("title", None)
        body.setdefault("properties", {})
        body["type"] = "object"
        return body

    def spec(self) -> dict[str, Any]:
        """The tool as the Messages API takes it."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema(),
        }


TOOLS: tuple[Tool, ...] = (
    Tool(
        "list_units",
        "List GPU units, filtered by pool, provider or state.",
        ListUnits,
        "units.list",
    ),
    Tool(
        "get_stats",
        "Per-pool ready/pending units, utilization, in-flight, queue and USD/hour; "
        "today's spend and budget.",
        GetStats,
        "stats",
    ),
    Tool(
        "get_available_gpus",
        "Live GPU offers across providers, cheapest first, filtered by model, VRAM, vendor, "
        "tier or price.",
        GetAvailableGpus,
        "gpus.available",
    ),
    Tool(
        "place_workload",
        "Where a workload needing `min_vram_gb` GB of VRAM should run, with alternatives and "
        "the reasoning.",
        PlaceWorkload,
        "place",
    ),
    Tool(
        "provision",
        "Ask for new units in a pool. The cost-guard approves, denies or holds it; the answer "
        "is its verdict.",
        Provision,
        "provision",
    ),
    Tool(
        "release",
        "Release one unit, or `count` of a pool's idlest units, through the cost-guard.",
        Release,
        "release",
    ),
    Tool(
        "cleanup_idle",
        "Release ready units idle for `idle_minutes` or more (30 by default).",
        CleanupIdle,
        "cleanup_idle",
    ),
    Tool("get_health", "Which services answer, open breakers, stream lag.", NoArgs, "health"),
    Tool("get_budget", "Today's spend, budget, burn rate and held requests.", NoArgs, "budget"),
    Tool("report", "A short readable report of stats and health.", GetStats, "report"),
)
BY_NAME: dict[str, Tool] = {t.name: t for t in TOOLS}


class InvalidArgs(ValueError):
    """Tool arguments that fail validation; the message says which and why."""


def validate(name: str, args: Any) -> tuple[Tool, Any]:
    """The tool and its typed arguments, or InvalidArgs."""
    tool = BY_NAME.get(name)
    if tool is None:
        raise InvalidArgs(f"no tool named {name!r}; tools: {', '.join(BY_NAME)}")
    try:
        return tool, msgspec.convert(args if args is not None else {}, tool.args)
    except msgspec.ValidationError as exc:
        raise InvalidArgs(f"{name}: {exc}") from None


def request_body(tool: Tool, args: Any) -> dict[str, Any]:
    """The fleet.api request for a validated call."""
    body: dict[str, Any] = {k: v for k, v in msgspec.to_builtins(args).items() if v is not None}
    if tool.name == "cleanup_idle":
        body["idle_s"] = float(body.pop("idle_minutes", 30.0)) * 60.0
    return body
