"""io.net VMaaS adapter against the io.net fake (built from io.net's reference) over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from contracts.offers import OfferFilter
from services.provisioner.providers.base import (
    AuthError,
    CapacityError,
    NotFound,
    Permanent,
    Retryable,
    Unavailable,
    Unconfirmed,
)
from services.provisioner.providers.ionet import VMAAS, IoNetProvider
from services.provisioner.providers.settings import ProviderSettings
from services.provisioner.retry import call_with_retry
from tests.fakes import IoNetFake, Reply


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


async def test_hardware_configurations_become_offers_priced_per_vm(fake, ionet) -> None:
    offers = await ionet.offers(OfferFilter())

    got = {(o.gpu_model, o.num_gpus): o for o in offers}
    assert got[("H100", 1)].usd_per_hour == 1.99 and got[("H100", 2)].usd_per_hour == 3.98
    assert got[("H100", 2)].offer_id == "101/2/US" and got[("H100", 2)].region == "US"
    assert got[("RTX4090", 1)].available == 0  # sold out
    assert got[("A100-80GB", 1)].available is None
    assert fake.requests[-1].headers["x-api-key"] == fake.api_key


async def test_deploy_sends_deploy_id_one_location_and_an_allowed_image_type(fake, ionet) -> None:
    offer = next(o for o in await ionet.offers(OfferFilter(gpu_model="H100", num_gpus=2)))

    [unit] = await ionet.create(offer, 1, "fleet.gpu.u1")

    deploy = next(r for r in fake.requests if r.path.endswith("/deploy"))
    assert deploy.body == {
        "resource_private_name": "fleet.gpu.u1",
        "duration_hours": 2,
        "gpus_per_vm": 2,
        "hardware_id": 101,
        "location_ids": ["US"],
        "vm_image_type": "general",
    }
    # The reply was an empty body, as the reference allows: the unit was found by name.
    assert unit.label == "fleet.gpu.u1" and unit.unit_id in fake.deployments
    assert unit.status == "booting" and unit.gpu_model == "H100"


async def test_the_fake_refuses_the_old_wrong_deploys() -> None:
    good = {
        "resource_private_name": "x",
        "duration_hours": 1,
        "gpus_per_vm": 1,
        "hardware_id": 101,
        "location_ids": ["US"],
        "vm_image_type": "general",
    }
    with IoNetFake() as fake:
        async with httpx.AsyncClient(
            base_url=fake.url, headers={"x-api-key": fake.api_key}
        ) as client:

            async def deploy(**change: object) -> httpx.Response:
                return await client.post(f"{VMAAS}/deploy", json={**good, **change})

            ubuntu = await deploy(vm_image_type="ubuntu")
            assert ubuntu.status_code == 422
            assert ubuntu.json()["detail"][0]["loc"] == ["body", "vm_image_type"]
            assert (await deploy(hardware_id="101__1")).status_code == 404  # the list id
            assert (await deploy(location_ids=[])).status_code == 422
            assert (await deploy(location_ids=["US", "FI"])).status_code == 422
            assert (await deploy(gpus_per_vm=9)).status_code == 422
            assert (await deploy(quantity=2)).status_code == 422  # no extra properties
            assert (await deploy()).status_code == 200
            assert (await deploy(location_ids=None)).status_code == 200


def test_an_image_type_the_reference_does_not_allow_fails_at_start() -> None:
    with pytest.raises(ValueError, match=r"\[providers.ionet\].*vm_image_type"):
        ProviderSettings.from_env("ionet", {"vm_image_type": "ubuntu"}, environ={})


async def test_list_destroy_round_trip_and_statuses(fake, ionet) -> None:
    offer = next(o for o in await ionet.offers(OfferFilter(gpu_model="A100-80GB")))
    units = await ionet.create(offer, 2, "fleet.gpu.u2")
    assert len(units) == 2 and len(fake.deployments) == 2

    fake.run_all()
    listed = await ionet.list()
    assert {u.unit_id for u in listed} == {u.unit_id for u in units}
    assert all(u.status == "ready" and u.label == "fleet.gpu.u2" for u in listed)
    assert (await ionet.get(units[0].unit_id)).status == "ready"
    assert [vm["status"] for vm in await ionet.vms(units[0].unit_id)] == ["running"]

    for unit in units:
        await ionet.destroy(unit.unit_id)
    assert await ionet.list() == []
    with pytest.raises(NotFound):
        await ionet.destroy(units[0].unit_id)


async def test_listing_follows_pages(fake, ionet) -> None:
    for i in range(130):
        fake.deployments[f"d{i}"] = {"id": f"d{i}", "status": "running", "name": f"n{i}"}

    assert len(await ionet.list()) == 130
    pages = [r.query["page"] for r in fake.requests if r.path.endswith("/deployments")]
    assert pages == ["0", "1"]


async def test_create_is_idempotent_by_name(fake, ionet) -> None:
    offer = next(o for o in await ionet.offers(OfferFilter(gpu_model="A100-80GB")))
    first = await ionet.create(offer, 1, "fleet.gpu.u3")
    again = await ionet.create(offer, 1, "fleet.gpu.u3")
    assert [u.unit_id for u in again] == [u.unit_id for u in first]
    assert len(fake.deployments) == 1


async def test_a_deploy_whose_answer_is_lost_is_found_by_name_on_retry(fake, ionet) -> None:
    offer = next(o for o in await ionet.offers(OfferFilter(gpu_model="A100-80GB")))
    fake.lose_create_answers(1)  # deployed (and billed), but the answer never comes

    with pytest.raises(Unconfirmed, match="timed out"):
        await ionet.create(offer, 1, "fleet.gpu.u4")
    assert len(fake.deployments) == 1

    [unit] = await ionet.create(offer, 1, "fleet.gpu.u4")
    assert unit.unit_id in fake.deployments and len(fake.deployments) == 1


async def test_an_empty_reply_not_yet_listed_waits_instead_of_deploying_twice() -> None:
    with IoNetFake(list_endpoint=False) as fake:
        provider = IoNetProvider(settings(fake))
        try:
            offer = next(o for o in await provider.offers(OfferFilter(gpu_model="H100")))
            with pytest.raises(Unconfirmed, match="without an id"):
                await provider.create(offer, 1, "fleet.gpu.u5")
            with pytest.raises(Unconfirmed, match="not confirmed") as err:
                await provider.create(offer, 1, "fleet.gpu.u5")
            assert err.value.after_s is not None and err.value.after_s > 0
            assert len(fake.deployments) == 1
        finally:
            await provider.close()


async def test_a_deploy_reply_with_an_id_is_used() -> None:
    with IoNetFake(deploy_reply=lambda d: {"data": {"deployment_id": d}}) as fake:
        provider = IoNetProvider(settings(fake))
        try:
            offer = next(o for o in await provider.offers(OfferFilter(gpu_model="H100")))
            [unit] = await provider.create(offer, 1, "fleet.gpu.u6")
            assert unit.unit_id in fake.deployments
        finally:
            await provider.close()


async def test_sold_out_and_gone_hardware_are_capacity_errors(fake, ionet) -> None:
    offers = await ionet.offers(OfferFilter())
    sold_out = next(o for o in offers if o.gpu_model == "RTX4090")
    with pytest.raises(CapacityError, match="Not enough available"):
        await ionet.create(sold_out, 1, "fleet.gpu.u7")

    fake.hardware = [h for h in fake.hardware if h["deploy_id"] != 102]
    gone = next(o for o in offers if o.gpu_model == "A100-80GB")
    with pytest.raises(CapacityError, match="Not found"):
        await ionet.create(gone, 1, "fleet.gpu.u8")
    assert fake.deployments == {}


async def test_a_validation_error_is_permanent_and_says_which_field(fake, ionet) -> None:
    offer = next(o for o in await ionet.offers(OfferFilter(gpu_model="H100")))
    fake.create_faults.append(
        Reply(422, {"detail": [{"loc": ["body", "ssh_keys"], "msg": "bad key", "type": "x"}]})
    )
    with pytest.raises(Permanent, match=r"body.ssh_keys: bad key"):
        await ionet.create(offer, 1, "fleet.gpu.u9")


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
    assert await call_with_retry(lambda: ionet.offers(OfferFilter()), sleep=no_sleep)


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


@pytest.mark.parametrize(
    ("status", "ours"),
    [("deployment requested", "booting"), ("running", "ready"), ("failed", "failed"),
     ("completed", "terminated"), ("termination requested", "terminated"),
     ("destroyed", "terminated")],
)  # fmt: skip
async def test_every_documented_deployment_status(fake, ionet, status: str, ours: str) -> None:
    fake.deployments["d1"] = {"id": "d1", "status": status, "name": "fleet.gpu.s"}
    [unit] = await ionet.list()
    assert unit.status == ours
