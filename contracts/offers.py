"""GPU offers and placement, shared by the provisioner, cost-guard, brain and CLI."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from contracts.base import Usd

Vendor = Literal["NVIDIA", "AMD", "Intel", "Apple", "other"]
Tier = Literal["enterprise", "high_end", "mid_range", "budget", "cpu"]
Runtime = Literal["cuda", "rocm", "metal", "any"]
"""The GPU software stack a workload is built for: CUDA runs on NVIDIA, ROCm on AMD,
Metal on Apple silicon; `any` takes every offer (CPU ones too)."""


class Offer(msgspec.Struct, frozen=True, kw_only=True):
    """Something a provider will rent us now, at a price."""

    provider: str
    offer_id: str
    """The provider's id for this offer (Vast.ai ask id, io.net hardware id, ...)."""
    gpu_model: str
    """Normalised model name, e.g. `H100`, `A100-80GB`, `RTX4090`."""
    vendor: Vendor = "NVIDIA"
    tier: Tier = "mid_range"
    vram_gb: Annotated[float, Meta(ge=0)] = 0.0
    """VRAM of one GPU, in GB."""
    num_gpus: Annotated[int, Meta(ge=0)] = 1
    usd_per_hour: Usd = 0.0
    """Price of the whole offer (all its GPUs) per hour."""
    reliability: Annotated[float, Meta(ge=0, le=1)] = 1.0
    region: str = ""
    available: int | None = None
    """How many such units can be had now, when the provider says."""


class OfferFilter(msgspec.Struct, frozen=True, kw_only=True):
    """What a workload needs; every field optional."""

    gpu_model: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    min_vram_gb: Annotated[float, Meta(ge=0, le=10_000)] | None = None
    """VRAM per card, GB."""
    vendor: Annotated[str, Meta(max_length=32)] | None = None
    """NVIDIA, AMD, Intel, Apple or other (any case)."""
    tier: Annotated[str, Meta(max_length=32)] | None = None
    """enterprise, high_end, mid_range, budget or cpu (any case)."""
    max_usd_per_hour: Usd | None = None
    num_gpus: Annotated[int, Meta(ge=1, le=64)] | None = None
    provider: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    runtime: Runtime = "any"
    """What the workload needs to run; offers on other hardware are left out. `any` by
    default on the wire, so a caller that does not say keeps today's answers."""
    cores: Annotated[int, Meta(ge=1, le=1024)] | None = None
    """vCPUs of one unit: a provider that makes units to order (Hypercore) offers that
    size, priced for it; others ignore it."""
    memory_mb: Annotated[int, Meta(ge=64, le=4_194_304)] | None = None
    """MiB of one unit, likewise."""


class Placement(msgspec.Struct, frozen=True, kw_only=True):
    """Where a workload should run, and why."""

    ok: bool
    offer: Offer | None = None
    alternatives: list[Offer] = msgspec.field(default_factory=list)
    reasoning: str = ""
