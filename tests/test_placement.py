"""Offer merging, filtering and placement: pure functions on plain values."""

from __future__ import annotations

import pytest

from contracts.offers import Offer, OfferFilter
from services.provisioner.catalog import CATALOG, lookup, normalize_gpu
from services.provisioner.placement import filter_offers, merge_offers, place


def offer(provider: str, oid: str, model: str, vram: float, usd: float, **kw) -> Offer:
    g = lookup(model)
    return Offer(
        provider=provider,
        offer_id=oid,
        gpu_model=model,
        vendor=g.vendor if g else "NVIDIA",
        tier=g.tier if g else "mid_range",
        vram_gb=vram,
        usd_per_hour=usd,
        **kw,
    )


VAST = [offer("vastai", "1", "RTX4090", 24, 0.35), offer("vastai", "2", "H100", 80, 2.40)]
IONET = [offer("ionet", "101@7", "H100", 80, 1.99), offer("ionet", "103@7", "A100-80GB", 80, 1.19)]
LAMBDA = [offer("lambda", "gpu_1x_a10", "A10", 24, 0.75, region="us-west-1")]


def test_merge_is_cheapest_first_across_providers_without_duplicates() -> None:
    merged = merge_offers([VAST, IONET, LAMBDA, VAST[:1]])
    assert [o.usd_per_hour for o in merged] == [0.35, 0.75, 1.19, 1.99, 2.40]


def test_filter_by_model_spelling_vendor_tier_vram_and_price() -> None:
    merged = merge_offers([VAST, IONET, LAMBDA])
    assert {o.provider for o in filter_offers(merged, OfferFilter(gpu_model="H100 SXM"))} == {
        "vastai",
        "ionet",
    }
    assert [o.gpu_model for o in filter_offers(merged, OfferFilter(min_vram_gb=48))] == [
        "A100-80GB",
        "H100",
        "H100",
    ]
    assert filter_offers(merged, OfferFilter(tier="enterprise", max_usd_per_hour=1.5)) == [IONET[1]]
    assert filter_offers(merged, OfferFilter(vendor="amd")) == []


def test_cheapest_feasible_offer_wins_and_reasoning_names_price_vram_runner_up() -> None:
    result = place(merge_offers([VAST, IONET, LAMBDA]), OfferFilter(min_vram_gb=80))

    assert result.ok and result.offer == IONET[1]
    assert "$1.19/h" in result.reasoning and "80 GB VRAM" in result.reasoning
    assert "Runner-up: ionet H100" in result.reasoning and "+$0.80/h" in result.reasoning
    assert [o.offer_id for o in result.alternatives] == ["101@7", "2"]


def test_open_breaker_providers_are_skipped_and_said_so() -> None:
    result = place(VAST + IONET, OfferFilter(gpu_model="H100"), unavailable_providers={"ionet"})
    assert result.ok and result.offer.provider == "vastai"
    assert "Skipped ionet" in result.reasoning


def test_unreliable_and_sold_out_offers_are_not_placed_on() -> None:
    shaky = offer("vastai", "9", "RTX4090", 24, 0.10, reliability=0.5)
    gone = offer("ionet", "8", "RTX4090", 24, 0.20, available=0)
    result = place([shaky, gone, *VAST], OfferFilter(gpu_model="RTX4090"))
    assert result.offer == VAST[0]
    assert "No runner-up fits" in result.reasoning


def test_nothing_fits_explains_why() -> None:
    result = place(VAST + LAMBDA, OfferFilter(min_vram_gb=80, max_usd_per_hour=1.0))
    assert not result.ok and result.offer is None
    assert result.reasoning.startswith("No offer fits:")
    assert "below 80 GB VRAM" in result.reasoning and "above $1.00/h" in result.reasoning

    empty = place([], OfferFilter())
    assert not empty.ok and "no provider returned any" in empty.reasoning


def test_catalog_normalises_provider_spellings() -> None:
    cases = {
        "H100 SXM": "H100",
        "NVIDIA H100 80GB HBM3": "H100",
        "RTX_4090": "RTX4090",
        "A100_SXM4": "A100-80GB",
        "A100 (40 GB SXM4)": "A100-40GB",
        "NVIDIA GeForce RTX 3090": "RTX3090",
        "Tesla T4": "T4",
        "NVIDIA RTX A6000": "A6000",
        "AMD Instinct MI300X OAM": "MI300X",
        "HL-225": "Gaudi2",
        "M2 Ultra": "M2-Ultra",
        "gpu_8x_h100_sxm5": "H100",
    }
    assert {name: normalize_gpu(name) for name in cases} == cases
    assert normalize_gpu("A100 SXM4", vram_gb=40) == "A100-40GB"
    assert normalize_gpu("a mystery card") is None
    # every catalog model is its own normal form
    assert all(normalize_gpu(model) == model for model in CATALOG)
    assert {CATALOG[m].vendor for m in ("MI250", "Gaudi2", "M2-Ultra")} == {"AMD", "Intel", "Apple"}


def test_a_cuda_workload_is_never_placed_on_apple_amd_or_cpu() -> None:
    offers = [
        offer("sim", "m2", "M2-Ultra", 192, 1.10),
        offer("sim", "mi", "MI300X", 192, 1.50),
        offer("hypercore", "vm", "CPU", 0, 0.04),
        offer("sim", "a100", "A100-80GB", 80, 1.90),
        offer("sim", "h100", "H100", 80, 2.40),
    ]
    cuda = place(offers, OfferFilter(min_vram_gb=40, runtime="cuda"))
    assert cuda.offer is not None and cuda.offer.gpu_model == "A100-80GB"
    assert [o.gpu_model for o in cuda.alternatives] == ["H100"]
    assert "M2-Ultra" not in cuda.reasoning

    rocm = place(offers, OfferFilter(min_vram_gb=40, runtime="rocm"))
    assert rocm.offer is not None and rocm.offer.gpu_model == "MI300X" and not rocm.alternatives
    metal = place(offers, OfferFilter(min_vram_gb=40, runtime="metal"))
    assert metal.offer is not None and metal.offer.gpu_model == "M2-Ultra"
    anything = place(offers, OfferFilter(min_vram_gb=40))
    assert anything.offer is not None and anything.offer.gpu_model == "M2-Ultra"

    none = place(offers[:2], OfferFilter(runtime="cuda"))
    assert not none.ok and "2 cannot run CUDA" in none.reasoning


def test_an_unknown_runtime_is_refused_by_the_contract() -> None:
    import msgspec

    with pytest.raises(msgspec.ValidationError, match="runtime"):
        msgspec.convert({"runtime": "opencl"}, OfferFilter)
