"""The GPU models we know, and a normaliser from provider spellings to them.

Providers name the same card a dozen ways ("H100 SXM", "NVIDIA H100 80GB HBM3",
"H100_SXM5", "gpu_8x_h100_sxm5"); offers carry the catalog model so that
placement, budgets and dashboards compare like with like.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

Vendor = Literal["NVIDIA", "AMD", "Intel", "Apple", "other"]
Tier = Literal["enterprise", "high_end", "mid_range", "budget", "cpu"]


class GpuModel(msgspec.Struct, frozen=True, kw_only=True):
    """One GPU model."""

    model: str
    """Catalog name, e.g. `H100`, `A100-80GB`, `RTX4090`."""
    vendor: Vendor
    tier: Tier
    vram_gb: float
    """Memory of one card in GB."""


def _m(model: str, vendor: Vendor, tier: Tier, vram_gb: float) -> GpuModel:
    return GpuModel(model=model, vendor=vendor, tier=tier, vram_gb=vram_gb)


CATALOG: dict[str, GpuModel] = {
    g.model: g
    for g in (
        _m("B200", "NVIDIA", "enterprise", 192),
        _m("H200", "NVIDIA", "enterprise", 141),
        _m("GH200", "NVIDIA", "enterprise", 96),
        _m("H100", "NVIDIA", "enterprise", 80),
        _m("H100-NVL", "NVIDIA", "enterprise", 94),
        _m("A100-80GB", "NVIDIA", "enterprise", 80),
        _m("A100-40GB", "NVIDIA", "enterprise", 40),
        _m("L40S", "NVIDIA", "high_end", 48),
        _m("L40", "NVIDIA", "high_end", 48),
        _m("RTX6000-ADA", "NVIDIA", "high_end", 48),
        _m("A6000", "NVIDIA", "high_end", 48),
        _m("A40", "NVIDIA", "high_end", 48),
        _m("V100", "NVIDIA", "mid_range", 16),
        _m("RTX5090", "NVIDIA", "high_end", 32),
        _m("RTX4090", "NVIDIA", "mid_range", 24),
        _m("RTX3090", "NVIDIA", "mid_range", 24),
        _m("A5000", "NVIDIA", "mid_range", 24),
        _m("A10", "NVIDIA", "mid_range", 24),
        _m("A4000", "NVIDIA", "budget", 16),
        _m("L4", "NVIDIA", "budget", 24),
        _m("RTX4080", "NVIDIA", "budget", 16),
        _m("RTX3080", "NVIDIA", "budget", 10),
        _m("T4", "NVIDIA", "budget", 16),
        _m("MI300X", "AMD", "enterprise", 192),
        _m("MI250", "AMD", "enterprise", 128),
        _m("RX7900XTX", "AMD", "budget", 24),
        _m("Gaudi2", "Intel", "enterprise", 96),
        _m("Gaudi3", "Intel", "enterprise", 128),
        _m("M2-Ultra", "Apple", "high_end", 192),
        _m("M3-Max", "Apple", "mid_range", 128),
        _m("CPU", "other", "cpu", 0),
    )
}

# Ordered: the first pattern that matches wins, so specific names come before
# the families they contain (H100 NVL before H100, A100 80GB before A100).
_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"b200", "B200"),
    (r"gh200", "GH200"),
    (r"h200", "H200"),
    (r"h100.?nvl", "H100-NVL"),
    (r"h100", "H100"),
    (r"a100.*80", "A100-80GB"),
    (r"a100.*40", "A100-40GB"),
    (r"a100", "A100"),
    (r"l40s", "L40S"),
    (r"l40", "L40"),
    (r"(rtx.?)?6000.?ada", "RTX6000-ADA"),
    (r"a6000", "A6000"),
    (r"a40\b|a40$", "A40"),
    (r"v100", "V100"),
    (r"5090", "RTX5090"),
    (r"4090", "RTX4090"),
    (r"4080", "RTX4080"),
    (r"3090", "RTX3090"),
    (r"3080", "RTX3080"),
    (r"a5000", "A5000"),
    (r"a4000", "A4000"),
    (r"a10g?\b|a10g?$", "A10"),
    (r"\bl4\b|^l4$", "L4"),
    (r"\bt4\b|^t4$", "T4"),
    (r"mi300", "MI300X"),
    (r"mi250", "MI250"),
    (r"7900.?xtx", "RX7900XTX"),
    (r"gaudi.?3", "Gaudi3"),
    (r"gaudi.?2|hl.?225", "Gaudi2"),
    (r"m2.?ultra", "M2-Ultra"),
    (r"m3.?max", "M3-Max"),
    (r"^cpu$|^none$", "CPU"),
)
_COMPILED = tuple((re.compile(p), model) for p, model in _PATTERNS)


def normalize_gpu(name: str | None, vram_gb: float | None = None) -> str | None:
    """The catalog model for a provider's GPU name, or None when it is not one we know.

    Case, underscores, dashes and vendor prefixes do not matter:
    "NVIDIA H100 80GB HBM3", "H100 SXM" and "h100_sxm5" all give `H100`. An A100
    whose name does not say its memory is told apart by `vram_gb` (per card), and
    is taken as the 80 GB card when that is unknown too (the common rental today).
    """
    if not name:
        return None
    text = name.strip().lower().replace("_", " ").replace("-", " ")
    text = re.sub(r"\b(nvidia|geforce|amd|instinct|intel|habana|apple)\b", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    squashed = text.replace(" ", "")
    for pattern, model in _COMPILED:
        if pattern.search(text) or pattern.search(squashed):
            if model == "A100":
                return "A100-40GB" if vram_gb and vram_gb < 60 else "A100-80GB"
            return model
    return None


def lookup(name: str | None, vram_gb: float | None = None) -> GpuModel | None:
    """The catalog entry for a provider's GPU name (or a catalog model), if known."""
    model = normalize_gpu(name, vram_gb)
    return CATALOG.get(model) if model else None


def describe(name: str, vram_gb_hint: float = 0.0) -> GpuModel:
    """A catalog entry for `name`; unknown cards keep their name, NVIDIA/mid_range and the hint."""
    known = lookup(name, vram_gb_hint or None)
    if known is not None:
        return known
    vendor: Vendor = "NVIDIA"
    low = name.lower()
    if "amd" in low or "radeon" in low or "instinct" in low:
        vendor = "AMD"
    elif "intel" in low or "gaudi" in low:
        vendor = "Intel"
    return GpuModel(
        model=name.strip() or "unknown", vendor=vendor, tier="mid_range", vram_gb=vram_gb_hint
    )
