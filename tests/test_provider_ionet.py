"""io.net VMaaS adapter against the local io.net fake over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from contracts.offers import OfferFilter
from services.provisioner.providers.base import (
    AuthError,
    CapacityError,
    NotFound,
    Retryable,
    Unavailable,
)
from services.provisioner.providers.ionet import IoNetProvider
from services.provisioner.providers.settings import ProviderSettings
from services.provisioner.retry import call_with_retry
from tests.fakes import IoNetFake


def settings(fake: IoNetFake, **env: str) -> ProviderSettings:
    return ProviderSettings.from_env(
        "ionet", {"timeout_s": 0.5, "duration_hours": 2}, environ={**fake.env(), **env}
    )


@pytest.fixture
def fake() -> Iterator[IoNetFake]:
    with IoNetFake() as f:
        yield f


@pytest.fixture
async def ionet(fake: IoNetFake) -> AsyncIterator[IoNetProvider]:
    provider = IoNetProvider(settings(fake))
    yield provider
    await provider.close()


async def test_hardware_becomes_offers_priced_per_card(fake, ionet) -> None:
    offers = await ionet.offers(OfferFilter(num_gpus=2))

    by_model = {o.gpu_model: o for o in offers}
    assert set(by_model) == {"H100", "A100-80GB", "RTX4090"}
    assert by_model["H100"].usd_per_hour == pytest.approx(2 * 1.99)
    assert by_model["H100"].num_gpus == 2 and by_model["H100"].vram_gb == 80
    assert by_model["H100"].offer_id == "101@7" and by_model["H100"].region == "US-Texas"
    assert by_model["RTX4090"].available == 0  # sold out
    assert fake.requests[-1].headers["x-api-key"] == fake.api_key


async def test_deploy_list_details_vms_destroy_round_trip(fake, ionet) -> None:
    offer = next(o for o in await ionet.offers(OfferFilter(gpu_model="H100")))

    units = await ionet.create(offer, 2, "cmd-io-1")
    assert len(units) == 2 and {u.label for u in units} == {"cmd-io-1"}
    deploy = next(r for r in fake.requests if r.path.endswith("/deploy"))
    assert deploy.body == {
        "resource_private_name": "cmd-io-1",
        "duration_hours": 2,
        "gpus_per_vm": 1,
        "hardware_id": 101,
        "location_ids": [7],
        "ssh_keys": {},
        "vm_image_type": "ubuntu",
    }

    fake.run_all()
    listed = await ionet.list()
    assert {u.unit_id for u in listed} == {u.unit_id for u in units}
    assert all(u.status == "ready" and u.gpu_model == "H100" for u in listed)
    assert (await ionet.get(units[0].unit_id)).status == "ready"
    assert [vm["status"] for vm in await ionet.vms(units[0].unit_id)] == ["running"]

    for unit in units:
        await ionet.destroy(unit.unit_id)
    assert await ionet.list() == []
    with pytest.raises(NotFound):
        await ionet.destroy(units[0].unit_id)


async def test_create_is_idempotent_by_key(fake, ionet) -> None:
    offer = next(o for o in await ionet.offers(OfferFilter(gpu_model="A100-80GB")))
    first = await ionet.create(offer, 1, "cmd-io-2")
    again = await ionet.create(offer, 1, "cmd-io-2")
    assert [u.unit_id for u in again] == [u.unit_id for u in first]
    assert len(fake.deployments) == 1


async def test_wrapped_deploy_response_and_missing_list_endpoint_are_tolerated() -> None:
    with IoNetFake(wrapped_deploy=True, list_endpoint=False) as fake:
        provider = IoNetProvider(settings(fake))
        try:
            offer = next(o for o in await provider.offers(OfferFilter(gpu_model="H100")))
            units = await provider.create(offer, 1, "cmd-io-3")
            assert [u.unit_id for u in await provider.list()] == [units[0].unit_id]
            assert [u.unit_id for u in await provider.create(offer, 1, "cmd-io-3")] == [
                units[0].unit_id
            ]
        finally:
            await provider.close()


async def test_sold_out_is_a_capacity_error(fake, ionet) -> None:
    offers = await ionet.offers(OfferFilter())
    sold_out = next(o for o in offers if o.gpu_model == "RTX4090")
    with pytest.raises(CapacityError, match="sold_out"):
        await ionet.create(sold_out, 1, "cmd-io-4")

    fake.fail_creates(True)
    with pytest.raises(CapacityError):
        await ionet.create(next(o for o in offers if o.gpu_model == "H100"), 1, "cmd-io-5")
    assert fake.deployments == {}


async def test_5xx_429_and_timeouts_are_retryable(fake, ionet) -> None:
    fake.fail_next(502)
    with pytest.raises(Retryable):
        await ionet.offers(OfferFilter())
    fake.fail_next(429, retry_after=3)
    with pytest.raises(Retryable) as err:
        await ionet.list()
    assert err.value.after_s == 3
    fake.fail_next("timeout")
    with pytest.raises(Retryable):
        await ionet.list()

    async def no_sleep(_: float) -> None:
        return None

    fake.fail_next(500, n=3)
    offers = await call_with_retry(lambda: ionet.offers(OfferFilter()), sleep=no_sleep)
    assert offers


async def test_bad_and_missing_keys(fake) -> None:
    bad = IoNetProvider(settings(fake, FLEET_IONET_KEY="io-wrong-secret"))
    try:
        with pytest.raises(AuthError) as err:
            await bad.list()
    finally:
        await bad.close()
    assert "ionet" in str(err.value) and "IONET_API_KEY" in str(err.value)
    assert "IO_API_KEY" in str(err.value) and "io-wrong-secret" not in str(err.value)

    none = IoNetProvider(ProviderSettings.from_env("ionet", {}, environ={}))
    assert not none.available
    with pytest.raises(Unavailable, match="FLEET_IONET_KEY"):
        await none.offers(OfferFilter())


async def test_io_api_key_is_read_too(fake) -> None:
    env = {"FLEET_IONET_URL": fake.url, "IO_API_KEY": fake.api_key}
    provider = IoNetProvider(ProviderSettings.from_env("ionet", {}, environ=env))
    try:
        assert provider.settings.key_source == "IO_API_KEY"
        assert await provider.list() == []
    finally:
        await provider.close()
