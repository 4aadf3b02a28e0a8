"""What the provisioner relies on from every HTTP adapter, checked against each fake:
list() gives back our label so reconciliation recognises our units (even from a fresh
adapter after a restart), and timeouts and 5xx are Retryable for every operation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from contracts.offers import Offer, OfferFilter
from services.provisioner import reconcile
from services.provisioner.inventory import Unit, idempotency_key
from services.provisioner.placement import merge_offers
from services.provisioner.providers import registry
from services.provisioner.providers.base import Provider, Retryable
from services.provisioner.providers.settings import ProviderSettings
from tests.fakes import FakeProvider, HypercoreFake, IoNetFake, LambdaFake, RunPodFake, VastFake


@dataclass(frozen=True)
class Case:
    name: str
    fake: Callable[[], FakeProvider]
    gpu: str | None
    extra: dict[str, Any]


CASES = [
    Case("vastai", VastFake, "RTX4090", {}),
    Case("ionet", IoNetFake, "H100", {}),
    Case("runpod", RunPodFake, "RTX4090", {}),
    Case("lambda", LambdaFake, "A10", {"ssh_key_name": "fleet-key"}),
    Case("hypercore", HypercoreFake, None, {}),
]
IDS = [c.name for c in CASES]


@pytest.fixture(params=CASES, ids=IDS)
def case(request: pytest.FixtureRequest) -> Iterator[tuple[Case, FakeProvider]]:
    c: Case = request.param
    fake = c.fake()
    fake.start()
    try:
        yield c, fake
    finally:
        fake.stop()


def adapter(c: Case, fake: FakeProvider) -> Provider:
    settings = ProviderSettings.from_env(c.name, {"timeout_s": 0.3, **c.extra}, fake.env())
    return registry.build_provider(c.name, settings)


async def first_offer(p: Provider, c: Case) -> Offer:
    offers = await p.offers(OfferFilter(gpu_model=c.gpu))
    usable = [o for o in offers if o.available is None or o.available > 0]
    assert usable, f"{c.name}: no usable offer for {c.gpu}"
    return usable[0]


async def test_a_fresh_adapter_lists_our_label_and_reconcile_recognises_the_unit(case) -> None:
    c, fake = case
    key = idempotency_key("gpu", "u0a1b2c3d4e5f")
    first = adapter(c, fake)
    try:
        made = await first.create(await first_offer(first, c), 1, key)
    finally:
        await first.close()
    assert len(made) == 1 and made[0].label == key
    fake.settle()  # providers whose list lags (Hypercore) have caught up by now

    # A new process (nothing remembered in memory) must still recognise the unit as ours.
    fresh = adapter(c, fake)
    try:
        listed = await fresh.list()
    finally:
        await fresh.close()
    ours = [u for u in listed if u.unit_id == made[0].unit_id]
    assert len(ours) == 1 and ours[0].label == key

    steps = reconcile.plan(c.name, [], listed, {"gpu"})
    assert [(type(s).__name__, getattr(s, "unit", None)) for s in steps] == [
        ("Adopt", "u0a1b2c3d4e5f")
    ]
    # A unit stored as requested before the create returned is attached, not duplicated.
    pending = Unit(unit="u0a1b2c3d4e5f", pool="gpu", provider=c.name, key=key)
    steps = reconcile.plan(c.name, [pending], listed, {"gpu"})
    assert steps == [reconcile.Attach("u0a1b2c3d4e5f", ours[0])]


OPS: dict[str, Callable[[Provider, Offer], Any]] = {
    "offers": lambda p, _o: p.offers(OfferFilter()),
    "list": lambda p, _o: p.list(),
    "create": lambda p, o: p.create(o, 1, "fleet.gpu.uretry"),
    "destroy": lambda p, _o: p.destroy("does-not-matter"),
}


@pytest.mark.parametrize("fault", [503, 500, "timeout"])
@pytest.mark.parametrize("op", list(OPS))
async def test_timeouts_and_server_errors_are_retryable(case, op: str, fault: int | str) -> None:
    c, fake = case
    p = adapter(c, fake)
    try:
        offer = await first_offer(p, c)
        fake.fail_next(fault)
        with pytest.raises(Retryable) as err:
            await OPS[op](p, offer)
        assert err.value.provider == c.name
        assert fake.api_key == "" or fake.api_key not in str(err.value)
    finally:
        await p.close()


def test_offers_of_one_type_in_two_regions_both_survive_the_merge() -> None:
    east = Offer(
        provider="lambda", offer_id="gpu_1x_h100_pcie", gpu_model="H100", region="us-east-1"
    )
    west = Offer(
        provider="lambda", offer_id="gpu_1x_h100_pcie", gpu_model="H100", region="us-west-3"
    )
    assert {o.region for o in merge_offers([[east, west], [east]])} == {"us-east-1", "us-west-3"}
