"""Merging offers across providers and choosing where a workload runs. Pure.

`fleet offers`, `fleet place`, the `fleet.api.place` endpoint and the
provisioner's failover all call these functions; they do no I/O, so the same
inputs always give the same answer and the reasoning can be audited.
"""

from __future__ import annotations

from collections.abc import Iterable

from contracts.offers import Offer, OfferFilter, Placement, Runtime
from services.provisioner.catalog import normalize_gpu

DEFAULT_MIN_RELIABILITY = 0.9
"""Offers below this reliability (0..1, as providers report it) are not placed on:
a host that fails one rental in ten costs more in restarts than it saves."""


def _order_key(offer: Offer) -> tuple[float, float, str, str, str]:
    return (offer.usd_per_hour, -offer.reliability, offer.provider, offer.offer_id, offer.region)


def merge_offers(per_provider: Iterable[Iterable[Offer]]) -> list[Offer]:
    """All offers from every provider in one list, cheapest first, duplicates dropped.

    Ties go to the more reliable offer, then by provider and offer id so the order
    is stable from one call to the next. The region is part of an offer's identity:
    Lambda names an instance type once and offers it in each region with capacity.
    """
    seen: dict[tuple[str, str, str], Offer] = {}
    for offers in per_provider:
        for offer in offers:
            key = (offer.provider, offer.offer_id, offer.region)
            if key not in seen or offer.usd_per_hour < seen[key].usd_per_hour:
                seen[key] = offer
    return sorted(seen.values(), key=_order_key)


RUNTIMES: dict[str, Runtime] = {"NVIDIA": "cuda", "AMD": "rocm", "Apple": "metal"}
"""The runtime each vendor's GPUs run; Intel Gaudi and CPU offers run none of them."""

RUNTIME_NAMES: dict[str, str] = {"cuda": "CUDA", "rocm": "ROCm", "metal": "Metal"}


def runtime_of(offer: Offer) -> Runtime | None:
    """The GPU runtime `offer` can run, or None when it runs none of CUDA, ROCm, Metal."""
    return RUNTIMES.get(offer.vendor)


def rejection(offer: Offer, flt: OfferFilter) -> str | None:
    """Why `offer` does not match `flt` (a short phrase), or None when it does.

    `min_vram_gb` is per card, as providers list it; `max_usd_per_hour` is the
    price of the whole offer.
    """
    if flt.provider and offer.provider != flt.provider:
        return f"not from {flt.provider}"
    if flt.gpu_model:
        wanted = normalize_gpu(flt.gpu_model) or flt.gpu_model
        have = normalize_gpu(offer.gpu_model, offer.vram_gb) or offer.gpu_model
        if wanted.lower() != have.lower():
            return f"not a {flt.gpu_model}"
    if flt.vendor and offer.vendor.lower() != flt.vendor.lower():
        return f"not {flt.vendor}"
    if flt.runtime != "any" and runtime_of(offer) != flt.runtime:
        return f"cannot run {RUNTIME_NAMES[flt.runtime]}"
    if flt.tier and offer.tier.lower() != flt.tier.lower():
        return f"not {flt.tier} tier"
    if flt.min_vram_gb is not None and offer.vram_gb < flt.min_vram_gb:
        return f"below {flt.min_vram_gb:g} GB VRAM"
    if flt.num_gpus is not None and offer.num_gpus < flt.num_gpus:
        return f"fewer than {flt.num_gpus} GPUs"
    if flt.max_usd_per_hour is not None and offer.usd_per_hour > flt.max_usd_per_hour:
        return f"above ${flt.max_usd_per_hour:.2f}/h"
    return None


def filter_offers(offers: Iterable[Offer], flt: OfferFilter) -> list[Offer]:
    """The offers that match every field set in `flt`, in their given order."""
    return [o for o in offers if rejection(o, flt) is None]


def _label(offer: Offer) -> str:
    gpus = f"{offer.num_gpus}x " if offer.num_gpus > 1 else ""
    return f"{offer.provider} {gpus}{offer.gpu_model} ({offer.vram_gb:g} GB VRAM)"


def place(
    offers: Iterable[Offer],
    need: OfferFilter,
    unavailable_providers: set[str] | frozenset[str] = frozenset(),
    min_reliability: float = DEFAULT_MIN_RELIABILITY,
    max_alternatives: int = 3,
) -> Placement:
    """The cheapest offer that fits `need`, with the reasoning in a sentence or two.

    Feasible means: matches `need` (model, vendor, tier, VRAM per card, GPU count,
    price cap, provider), reliability at least `min_reliability`, not known to be
    sold out, and not from a provider in `unavailable_providers` (open breaker or
    no credentials). When nothing fits, `ok` is False and the reasoning counts
    what ruled the offers out.
    """
    ordered = merge_offers([offers])
    feasible: list[Offer] = []
    reasons: dict[str, int] = {}
    skipped_providers: set[str] = set()
    for offer in ordered:
        why = rejection(offer, need)
        if why is None and offer.provider in unavailable_providers:
            skipped_providers.add(offer.provider)
            why = "from a provider that is unavailable now"
        if why is None and offer.reliability < min_reliability:
            why = f"below {min_reliability:.0%} reliability"
        if why is None and offer.available is not None and offer.available <= 0:
            why = "sold out"
        if why is None:
            feasible.append(offer)
        else:
            reasons[why] = reasons.get(why, 0) + 1

    skipped = ""
    if skipped_providers:
        skipped = f" Skipped {', '.join(sorted(skipped_providers))} (unavailable)."
    if not feasible:
        if not reasons:
            text = "No offers to choose from: no provider returned any."
        else:
            parts = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
            text = "No offer fits: " + "; ".join(f"{n} {why}" for why, n in parts) + "."
        return Placement(ok=False, reasoning=text)

    best, rest = feasible[0], feasible[1:]
    text = (
        f"Chose {_label(best)} at ${best.usd_per_hour:.2f}/h, "
        f"the cheapest of {len(feasible)} feasible offer{'s' if len(feasible) != 1 else ''}."
    )
    if rest:
        runner = rest[0]
        delta = runner.usd_per_hour - best.usd_per_hour
        text += f" Runner-up: {_label(runner)} at ${runner.usd_per_hour:.2f}/h (+${delta:.2f}/h)."
    else:
        text += " No runner-up fits."
    return Placement(
        ok=True, offer=best, alternatives=rest[:max_alternatives], reasoning=text + skipped
    )
