"""Hypercore adapter against the local Hypercore node fake over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from contracts.offers import OfferFilter
from services.provisioner.providers.base import CapacityError, NotFound, Retryable, Unavailable
from services.provisioner.providers.hypercore import HypercoreProvider
from services.provisioner.providers.settings import ProviderSettings
from tests.fakes import HypercoreFake


@pytest.fixture
def fake() -> Iterator[HypercoreFake]:
    with HypercoreFake() as f:
        yield f


@pytest.fixture
async def hc(fake: HypercoreFake) -> AsyncIterator[HypercoreProvider]:
    section = {"timeout_s": 0.5, "cores": 4, "memory_mb": 4096, "usd_per_core_hour": 0.01}
    provider = HypercoreProvider(ProviderSettings.from_env("hypercore", section, fake.env()))
    yield provider
    await provider.close()


async def test_offer_is_priced_from_cores(fake, hc) -> None:
    [offer] = await hc.offers(OfferFilter())
    assert offer.tier == "cpu" and offer.num_gpus == 0
    assert offer.usd_per_hour == pytest.approx(0.04)
    assert await hc.offers(OfferFilter(min_vram_gb=16)) == []


async def test_spawn_list_stop_round_trip_with_zero_fields_omitted(fake, hc) -> None:
    [offer] = await hc.offers(OfferFilter())
    units = await hc.create(offer, 2, "runner-pool-1")
    spawn = next(r for r in fake.requests if r.path == "/spawn")
    assert spawn.body["cores"] == 4 and spawn.body["memory"] == 4096
    assert spawn.body["env"] == ["FLEET_LABEL=runner-pool-1"]

    listed = await hc.list()
    assert {u.unit_id for u in listed} == {u.unit_id for u in units}
    assert all(u.label == "runner-pool-1" and u.status == "ready" for u in listed)
    assert all(u.usd_per_hour == pytest.approx(0.04) and u.address == "10.0.0.2" for u in listed)

    await hc.destroy(units[0].unit_id)
    assert [u.unit_id for u in await hc.list()] == [units[1].unit_id]
    with pytest.raises(NotFound):
        await hc.destroy(units[0].unit_id)


async def test_create_is_idempotent_by_label(fake, hc) -> None:
    [offer] = await hc.offers(OfferFilter())
    first = await hc.create(offer, 1, "runner-a")
    again = await hc.create(offer, 1, "runner-a")
    assert [u.unit_id for u in again] == [u.unit_id for u in first]
    assert len(fake.workloads) == 1


async def test_full_node_is_a_capacity_error_after_partial_spawn(fake, hc) -> None:
    [offer] = await hc.offers(OfferFilter())
    fake.max_cores = 4
    units = await hc.create(offer, 2, "runner-b")  # room for one 4-core VM only
    assert len(units) == 1
    with pytest.raises(CapacityError, match="insufficient"):
        await hc.create(offer, 1, "runner-c")


async def test_retryable_faults_and_unconfigured_node(fake, hc) -> None:
    fake.fail_next(503)
    with pytest.raises(Retryable):
        await hc.list()
    fake.fail_next("timeout")
    with pytest.raises(Retryable):
        await hc.offers(OfferFilter())

    none = HypercoreProvider(ProviderSettings.from_env("hypercore", {}, environ={}))
    assert not none.available
    with pytest.raises(Unavailable, match="FLEET_HYPERCORE_URL"):
        await none.offers(OfferFilter())
