"""Hypercore adapter against the Hypercore node fake (built from hypercore's source)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from contracts.offers import OfferFilter
from services.provisioner.providers.base import (
    CapacityError,
    NotFound,
    Permanent,
    ProviderError,
    Retryable,
    Unavailable,
    Unconfirmed,
)
from services.provisioner.providers.hypercore import HypercoreProvider
from services.provisioner.providers.settings import ProviderSettings
from tests.fakes import HypercoreFake, Reply

SECTION = {"timeout_s": 0.5, "cores": 4, "memory_mb": 4096, "usd_per_core_hour": 0.01}


@pytest.fixture
def fake() -> Iterator[HypercoreFake]:
    with HypercoreFake() as f:
        yield f


def adapter(fake: HypercoreFake, **extra: object) -> HypercoreProvider:
    return HypercoreProvider(
        ProviderSettings.from_env("hypercore", {**SECTION, **extra}, fake.env())
    )


@pytest.fixture
async def hc(fake: HypercoreFake) -> AsyncIterator[HypercoreProvider]:
    provider = adapter(fake)
    yield provider
    await provider.close()


async def test_offer_is_priced_from_cores(fake, hc) -> None:
    [offer] = await hc.offers(OfferFilter())
    assert offer.tier == "cpu" and offer.num_gpus == 0
    assert offer.usd_per_hour == pytest.approx(0.04)
    assert await hc.offers(OfferFilter(min_vram_gb=16)) == []


async def test_spawn_list_stop_round_trip(fake, hc) -> None:
    [offer] = await hc.offers(OfferFilter())
    units = await hc.create(offer, 2, "runner-pool-1")
    spawn = next(r for r in fake.requests if r.path == "/spawn")
    assert spawn.body == {
        "cores": 4,
        "memory": 4096,
        "image_ref": "docker.io/library/python:3.11-slim",
        "env": ["FLEET_LABEL=runner-pool-1"],
    }
    fake.settle()
    listed = await hc.list()
    assert {u.unit_id for u in listed} == {u.unit_id for u in units}
    assert all(u.label == "runner-pool-1" and u.status == "ready" for u in listed)
    assert all(u.usd_per_hour == pytest.approx(0.04) for u in listed)

    await hc.destroy(units[0].unit_id)
    fake.settle()
    assert [u.unit_id for u in await hc.list()] == [units[1].unit_id]


async def test_node_ip_is_a_marker_never_an_address(fake, hc) -> None:
    [offer] = await hc.offers(OfferFilter())
    [unit] = await hc.create(offer, 1, "runner-ip")
    fake.settle()
    assert unit.address and unit.address.endswith(".node-1.local")  # the spawn's url
    [listed] = await hc.list()
    assert listed.address == unit.address
    fresh = adapter(fake)
    try:
        [seen] = await fresh.list()
    finally:
        await fresh.close()
    assert seen.address is None  # not "node-1_complete"


async def test_list_lag_after_a_spawn_does_not_spawn_a_duplicate(fake, hc) -> None:
    [offer] = await hc.offers(OfferFilter())
    [first] = await hc.create(offer, 1, "runner-a")
    # /list has not caught up (no broadcast yet): the retry must still see the VM.
    assert (await fake_list_ids(hc, fake)) == []
    again = await hc.create(offer, 1, "runner-a")
    assert [u.unit_id for u in again] == [first.unit_id]
    assert len(fake.workloads) == 1


async def fake_list_ids(hc: HypercoreProvider, fake: HypercoreFake) -> list[str]:
    return [w["id"] for st in await hc.states() for w in st.get("workloads") or []]


async def test_a_spawn_whose_answer_is_lost_is_not_repeated_while_list_lags(fake, hc) -> None:
    [offer] = await hc.offers(OfferFilter())
    fake.lose_create_answers(1)
    with pytest.raises(Unconfirmed):
        await hc.create(offer, 1, "runner-late")
    with pytest.raises(Unconfirmed, match="not confirmed"):
        await hc.create(offer, 1, "runner-late")  # /list does not show it yet
    fake.settle()
    [unit] = await hc.create(offer, 1, "runner-late")
    assert list(fake.workloads) == [unit.unit_id]


async def test_stopping_a_gone_workload_is_not_found(fake, hc) -> None:
    with pytest.raises(NotFound, match="no success response"):
        await hc.destroy("0b2f6c1e-gone")


async def test_stopping_a_listed_workload_that_does_not_stop_is_an_error(fake, hc) -> None:
    [offer] = await hc.offers(OfferFilter())
    [unit] = await hc.create(offer, 1, "runner-stuck")
    fake.settle()
    fake.workloads.clear()  # the node lost it, but its last broadcast still lists it
    with pytest.raises(ProviderError, match="failed") as err:
        await hc.destroy(unit.unit_id)
    assert not isinstance(err.value, NotFound)


async def test_no_room_on_any_node_is_a_capacity_error_after_a_partial_spawn(fake, hc) -> None:
    [offer] = await hc.offers(OfferFilter())
    fake.max_cores = 4
    units = await hc.create(offer, 2, "runner-b")  # room for one 4-core VM only
    assert len(units) == 1
    with pytest.raises(CapacityError, match="no suitable node"):
        await hc.create(offer, 1, "runner-c")


async def test_a_policy_violation_is_permanent(fake, hc) -> None:
    [offer] = await hc.offers(OfferFilter())
    fake.create_faults.append(Reply(400, {"error": "policy violation: image not allowed"}))
    with pytest.raises(Permanent, match="policy violation"):
        await hc.create(offer, 1, "runner-d")


async def test_the_fake_refuses_wrongly_typed_fields_as_go_does(fake) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=fake.url) as client:
        bad = await client.post("/spawn", json={"cores": "two", "memory": 1, "image_ref": "x"})
        ignored = await client.post(
            "/spawn", json={"cores": 1, "memory": 1, "image_ref": "x", "zz": 1}
        )
    assert bad.status_code == 400 and bad.json()["error"].startswith("json: cannot unmarshal")
    assert ignored.status_code == 200  # unknown fields are ignored by encoding/json


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


async def test_the_address_survives_later_listings(fake, hc) -> None:
    [offer] = await hc.offers(OfferFilter())
    [unit] = await hc.create(offer, 1, "runner-addr")
    fake.settle()
    first = await hc.list()
    second = await hc.list()
    assert [u.address for u in first] == [u.address for u in second] == [unit.address]
