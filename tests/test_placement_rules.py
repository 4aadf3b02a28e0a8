"""Placement at its edges, with plain values: each reason an offer is passed over, in
the words `fleet place` prints, each limit exactly met, and the reasoning's sentences."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.offers import Offer, OfferFilter
from services.provisioner.placement import merge_offers, place, rejection


def offer(provider: str = "sim", usd: float = 2.0, **kw: Any) -> Offer:
    fields: dict[str, Any] = {
        "offer_id": f"{provider}-{usd}",
        "gpu_model": "H100",
        "vendor": "NVIDIA",
        "tier": "enterprise",
        "vram_gb": 80.0,
        **kw,
    }
    return Offer(provider=provider, usd_per_hour=usd, **fields)


@pytest.mark.parametrize(
    ("flt", "why"),
    [
        (OfferFilter(provider="vastai"), "not from vastai"),
        (OfferFilter(gpu_model="A100"), "not a A100"),
        (OfferFilter(vendor="AMD"), "not AMD"),
        (OfferFilter(tier="consumer"), "not consumer tier"),
        (OfferFilter(min_vram_gb=80.5), "below 80.5 GB VRAM"),
        (OfferFilter(num_gpus=2), "fewer than 2 GPUs"),
        (OfferFilter(max_usd_per_hour=1.99), "above $1.99/h"),
    ],
)
def test_each_reason_an_offer_is_passed_over(flt: OfferFilter, why: str) -> None:
    assert rejection(offer(), flt) == why


def test_every_limit_exactly_met_is_a_match_whatever_the_spelling() -> None:
    exact = OfferFilter(
        provider="sim",
        gpu_model="h100",
        vendor="nvidia",
        tier="ENTERPRISE",
        min_vram_gb=80.0,
        num_gpus=1,
        max_usd_per_hour=2.0,
    )
    assert rejection(offer(), exact) is None
    assert rejection(offer(), OfferFilter()) is None


def test_the_reasoning_names_the_choice_the_runner_up_and_the_difference() -> None:
    offers = [offer("sim", 2.0), offer("vastai", 2.5, num_gpus=2), offer("ionet", 3.0)]
    placed = place(offers, OfferFilter())
    assert placed.ok and placed.offer == offers[0]
    assert placed.reasoning == (
        "Chose sim H100 (80 GB VRAM) at $2.00/h, the cheapest of 3 feasible offers. "
        "Runner-up: vastai 2x H100 (80 GB VRAM) at $2.50/h (+$0.50/h)."
    )
    assert placed.alternatives == offers[1:]
    assert place(offers, OfferFilter(), max_alternatives=1).alternatives == offers[1:2]
    alone = place([offer()], OfferFilter())
    assert alone.reasoning == (
        "Chose sim H100 (80 GB VRAM) at $2.00/h, the cheapest of 1 feasible offer. "
        "No runner-up fits."
    )


def test_unavailable_providers_unreliable_and_sold_out_offers_are_counted_out() -> None:
    offers = [
        offer("down", 1.0),
        offer("shaky", 1.1, reliability=0.89),
        offer("gone", 1.2, available=0),
        offer("edge", 1.3, reliability=0.9, available=1),
    ]
    placed = place(offers, OfferFilter(), unavailable_providers={"down"})
    assert placed.offer == offers[3]
    assert placed.reasoning.endswith("No runner-up fits. Skipped down (unavailable).")
    none = place(offers[:3], OfferFilter(max_usd_per_hour=1.15), {"down"})
    assert not none.ok and none.offer is None
    assert none.reasoning == (
        "No offer fits: 1 above $1.15/h; 1 below 90% reliability; "
        "1 from a provider that is unavailable now."
    )
    assert place(offers[1:], OfferFilter(), min_reliability=0.85).offer == offers[1]


def test_the_most_common_reason_comes_first() -> None:
    offers = [offer("a", 3.0), offer("b", 3.0), offer("c", 1.0, vram_gb=24.0)]
    placed = place(offers, OfferFilter(min_vram_gb=40, max_usd_per_hour=2.0))
    assert placed.reasoning == "No offer fits: 2 above $2.00/h; 1 below 40 GB VRAM."
    assert place([], OfferFilter()).reasoning == (
        "No offers to choose from: no provider returned any."
    )


def test_merging_keeps_the_cheaper_copy_and_orders_ties_by_reliability_then_name() -> None:
    dear, cheap = offer("sim", 2.0), offer("sim", 1.5, offer_id="sim-2.0")
    assert merge_offers([[dear], [cheap]]) == [cheap]
    assert merge_offers([[cheap], [dear]]) == [cheap]
    steady, flaky = offer("b", 1.0, reliability=0.99), offer("a", 1.0, reliability=0.95)
    assert merge_offers([[flaky, steady]]) == [steady, flaky]
    west, east = offer("l", 1.0, region="us-west"), offer("l", 1.0, region="us-east")
    assert merge_offers([[west, east]]) == [east, west]  # one offer per region
