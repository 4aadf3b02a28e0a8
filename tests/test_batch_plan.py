"""The batch planner with plain values: the guide's example, deadlines, caps, billing
periods, speed factors, and plain answers when nothing fits."""

from __future__ import annotations

import msgspec
import pytest

from contracts.batch import PlanBatchCall
from contracts.batchplan import (
    ModelTerms,
    cheapest_offers,
    duration,
    item_seconds,
    plan_batch,
    split,
)
from contracts.gpuspeed import SPEED

RTX = ModelTerms(gpu_model="RTX4090", provider="sim", usd_per_hour=0.44, lead_time_s=120)
H100 = ModelTerms(gpu_model="H100", provider="sim", usd_per_hour=2.49, lead_time_s=120)


def test_the_guides_example_picks_rtx4090s_under_100_usd() -> None:
    # 1,000 images, 5 hours on one RTX 4090 (18 s each), RTX 4090s, total under $100.
    call = PlanBatchCall(items=1000, per_item_s=18, gpu_models=["RTX4090"], max_usd=100)
    plan = plan_batch(call, [RTX, H100])
    assert plan.ok and plan.chosen is not None
    assert plan.chosen.gpu_model == "RTX4090" and plan.chosen.count == 1
    assert plan.chosen.wall_s == 120 + 1000 * 18  # lead time, then 5 hours
    assert plan.chosen.cost_usd == pytest.approx(0.44 * 18120 / 3600, abs=1e-6)
    assert plan.chosen.cost_usd < 100
    assert {o.gpu_model for o in plan.options} == {"RTX4090"}  # H100 was not allowed
    assert plan.ref_gpu == "RTX4090"  # measured on the card named
    assert "cheapest option that costs at most $100.00" in plan.reason


def test_a_deadline_buys_more_gpus_and_the_cheapest_that_meets_it_wins() -> None:
    call = PlanBatchCall(items=1000, per_item_s=18, gpu_models=["RTX4090"], deadline_s=3600)
    plan = plan_batch(call, [RTX])
    assert plan.chosen is not None
    # ceil(1000 / n) * 18 + 120 <= 3600 first holds at n = 6 (167 items: 3126 s).
    assert (plan.chosen.count, plan.chosen.wall_s) == (6, 120 + 167 * 18)
    assert all(o.meets_deadline == (o.wall_s <= 3600) for o in plan.options)
    assert not any(o.meets_deadline for o in plan.options if o.count < 6)


def test_with_hourly_billing_more_gpus_can_be_cheaper() -> None:
    hourly = msgspec.structs.replace(RTX, billing_s=3600, lead_time_s=0)
    # 1 GPU: 5 h 00 m -> 5 h billed. 5 GPUs: 1 h -> 5 h billed. 4 GPUs: 1 h 15 -> 8 h billed.
    plan = plan_batch(
        PlanBatchCall(items=1000, per_item_s=18, gpu_models=["RTX4090"], deadline_s=3600), [hourly]
    )
    assert plan.chosen is not None
    assert (plan.chosen.count, plan.chosen.cost_usd) == (5, pytest.approx(5 * 0.44, abs=1e-6))
    four = next(o for o in plan.options if o.count == 4)
    assert four.cost_usd == pytest.approx(8 * 0.44, abs=1e-6) and not four.meets_deadline


def test_other_models_are_timed_by_their_speed_relative_to_the_reference() -> None:
    assert item_seconds(18, "RTX4090", "H100") == pytest.approx(18 * SPEED["RTX4090"])
    assert item_seconds(18, "H100", "RTX4090") == pytest.approx(18 / SPEED["RTX4090"])
    assert item_seconds(18, "NoSuchCard", "NoSuchCard") == 18
    assert item_seconds(18, "NoSuchCard", "H100") is None
    # Any model, 45 s per item on an H100 (the default reference) within an hour: the
    # faster but dearer H100 costs less than enough RTX 4090s only if it is cheap enough.
    plan = plan_batch(PlanBatchCall(items=1000, per_item_s=18, deadline_s=3600), [RTX, H100])
    assert plan.ref_gpu == "H100" and plan.chosen is not None
    rtx = min(
        (o for o in plan.options if o.gpu_model == "RTX4090" and o.meets_deadline),
        key=lambda o: o.cost_usd,
    )
    h100 = min(
        (o for o in plan.options if o.gpu_model == "H100" and o.meets_deadline),
        key=lambda o: o.cost_usd,
    )
    assert plan.chosen == min((rtx, h100), key=lambda o: o.cost_usd)


def test_when_nothing_fits_it_says_so_and_what_would() -> None:
    call = PlanBatchCall(
        items=1000, per_item_s=18, gpu_models=["RTX4090"], max_usd=2.25, deadline_s=3600
    )
    plan = plan_batch(call, [RTX])
    assert not plan.ok and plan.chosen is None
    assert plan.reason.startswith("no option finishes within 1h00m and costs at most $2.25")
    bigger_cap, later = plan.instead
    assert bigger_cap.meets_deadline and bigger_cap.cost_usd > 2.25  # a larger cap would do
    assert f"with a cap of ${bigger_cap.cost_usd:,.2f}" in plan.reason
    assert later.within_cap and later.wall_s > 3600  # ... or a later deadline
    assert f"with a deadline of {duration(later.wall_s)}" in plan.reason


def test_a_deadline_no_count_can_meet_names_the_fastest() -> None:
    call = PlanBatchCall(items=10, per_item_s=60, gpu_models=["RTX4090"], deadline_s=100)
    plan = plan_batch(call, [RTX])  # the 120 s lead time alone misses it
    assert not plan.ok
    assert plan.reason.endswith(
        "with a deadline of 3m00s: 10 x RTX4090 on sim at $0.44/h, 3m00s, $0.22"
    )
    broke = plan_batch(msgspec.structs.replace(call, max_usd=0.01), [RTX])
    assert "the fastest possible is 10 x RTX4090" in broke.reason


def test_models_without_an_offer_or_a_speed_are_named_not_guessed() -> None:
    odd = ModelTerms(gpu_model="Mystery9000", provider="sim", usd_per_hour=0.1)
    call = PlanBatchCall(items=100, per_item_s=10, gpu_models=["RTX4090", "Mystery9000", "B200"])
    plan = plan_batch(call, [RTX, odd])
    assert "B200: no live offer" in plan.notes
    assert "Mystery9000: no speed figure relative to RTX4090" in plan.notes
    assert plan.chosen is not None and plan.chosen.gpu_model == "RTX4090"
    nothing = plan_batch(PlanBatchCall(items=5, per_item_s=1, gpu_models=["B200"]), [RTX])
    assert not nothing.ok and nothing.options == []
    assert nothing.reason == "no GPU model can be planned: B200: no live offer"


def test_counts_stop_at_max_gpus_what_the_provider_has_and_the_items() -> None:
    scarce = msgspec.structs.replace(RTX, available=3)
    plan = plan_batch(
        PlanBatchCall(items=100, per_item_s=36, gpu_models=["RTX4090"], deadline_s=600), [scarce]
    )
    assert max(o.count for o in plan.options) == 3 and not plan.ok
    few = plan_batch(PlanBatchCall(items=2, per_item_s=1, gpu_models=["RTX4090"]), [RTX])
    assert max(o.count for o in few.options) == 2


def test_bad_input_is_refused_by_the_type() -> None:
    for bad in (
        {"items": 0, "per_item_s": 1},
        {"items": 5, "per_item_s": 0},
        {"items": 5, "per_item_s": 1, "max_usd": -1},
        {"items": 5, "per_item_s": 1, "deadline_s": 0},
    ):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, PlanBatchCall)


def test_cheapest_offer_per_model_is_per_gpu_and_items_split_evenly() -> None:
    offers = [
        {"gpu_model": "H100", "provider": "a", "usd_per_hour": 16.0, "num_gpus": 8},
        {"gpu_model": "H100", "provider": "b", "usd_per_hour": 2.5},
        {"gpu_model": "RTX4090", "provider": "a", "usd_per_hour": 0.5},
        {"gpu_model": "", "provider": "a", "usd_per_hour": 0.1},
    ]
    best = cheapest_offers(offers)
    assert best["H100"]["provider"] == "a" and set(best) == {"H100", "RTX4090"}
    assert split(10, 4) == [3, 3, 2, 2] and split(3, 8) == [1, 1, 1] and sum(split(1000, 7)) == 1000
    assert [duration(s) for s in (45, 750, 18120, 183600)] == ["45s", "12m30s", "5h02m", "2d03h"]
