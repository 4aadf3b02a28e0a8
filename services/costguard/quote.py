"""Price a provision: the cheapest current offer the pool may take, if any."""

from __future__ import annotations

import math

import msgspec

from contracts.offers import Offer, OfferFilter
from services.kit.pools import PoolConfig


class Quote(msgspec.Struct, frozen=True, kw_only=True):
    """The offer a provision is priced at."""

    provider: str
    usd_per_hour: float
    offer_id: str | None = None


def offer_filter(
    pool: PoolConfig,
    gpu_model: str,
    ceiling: float,
    provider: str | None,
    size: tuple[int | None, int | None] = (None, None),
) -> OfferFilter:
    """What to ask the provisioner's `gpus.available` for; `size` (cores, memory_mb) of a
    unit made to order, so it is priced at its size."""
    model = pool.gpu_model if gpu_model == "any" else gpu_model
    return OfferFilter(
        gpu_model=None if model == "any" else model,
        max_usd_per_hour=ceiling,
        provider=provider,
        cores=size[0],
        memory_mb=size[1],
    )


def best_offer(
    offers: list[Offer], pool: PoolConfig, ceiling: float, provider: str | None = None
) -> Quote | None:
    """The cheapest offer from one of the pool's providers at or below `ceiling`."""
    allowed = [provider] if provider else pool.providers
    model = pool.gpu_model
    fits = [
        o
        for o in offers
        if o.provider in allowed
        and math.isfinite(o.usd_per_hour)
        and 0 < o.usd_per_hour <= ceiling
        and (model == "any" or o.gpu_model == model)
        and (o.available is None or o.available > 0)
    ]
    if not fits:
        return None
    best = min(fits, key=lambda o: (o.usd_per_hour, allowed.index(o.provider)))
    return Quote(provider=best.provider, usd_per_hour=best.usd_per_hour, offer_id=best.offer_id)
