"""RunPod adapter (REST v2) against the RunPod fake, built from RunPod's v2 OpenAPI."""

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
    QuotaExceeded,
    Retryable,
    Unavailable,
    Unconfirmed,
)
from services.provisioner.providers.runpod import RunPodProvider
from services.provisioner.providers.settings import ProviderSettings
from tests.fakes import RunPodFake
from tests.fakes.runpod import problem


def settings(fake: RunPodFake, **env: str) -> ProviderSettings:
    return ProviderSettings.from_env(
        "runpod",
        {"timeout_s": 0.5, "image": "ghcr.io/acme/worker:1"},
        environ={**fake.env(), **env},
    )


@pytest.fixture
def fake() -> Iterator[RunPodFake]:
    with RunPodFake() as f:
        yield f


@pytest.fixture
async def runpod(fake: RunPodFake) -> AsyncIterator[RunPodProvider]:
    provider = RunPodProvider(settings(fake))
    yield provider
    await provider.close()


async def test_the_catalog_becomes_offers_with_stock(fake, runpod) -> None:
    offers = await runpod.offers(OfferFilter(min_vram_gb=24))

    got = {o.gpu_model: o for o in offers}
    assert got["RTX4090"].usd_per_hour == 0.69 and got["H100"].usd_per_hour == 2.99
    assert got["MI300X"].vendor == "AMD" and got["MI300X"].available == 0  # NONE in stock
    ask = fake.requests[-1]
    assert ask.path == "/v2/catalog/gpus"
    assert ask.query == {
        "include": "AVAILABILITY",
        "product": "POD",
        "cloud": "SECURE",
        "count": "1",
    }
    assert ask.headers["authorization"] == f"Bearer {fake.api_key}"


async def test_community_cloud_prices_and_gpu_count(fake) -> None:
    provider = RunPodProvider(
        ProviderSettings.from_env("runpod", {"cloud_type": "community"}, fake.env())
    )
    try:
        offers = await provider.offers(OfferFilter(num_gpus=2))
    finally:
        await provider.close()
    assert {o.gpu_model: o.usd_per_hour for o in offers} == {"RTX4090": 0.88, "L4": 0.56}


async def test_a_pod_is_ready_only_when_running(fake, runpod) -> None:
    offer = (await runpod.offers(OfferFilter(gpu_model="RTX 4090", num_gpus=2)))[0]

    [unit] = await runpod.create(offer, 1, "fleet.gpu.p1")
    post = next(r for r in fake.requests if r.method == "POST")
    assert post.path == "/v2/pods"
    assert post.body == {
        "name": "fleet.gpu.p1",
        "image": "ghcr.io/acme/worker:1",
        "gpu": {"id": "NVIDIA GeForce RTX 4090", "count": 2},
        "cloud": "SECURE",
        "disk": 20,
    }
    assert unit.status == "booting" and unit.usd_per_hour == pytest.approx(1.38)

    fake.pods[unit.unit_id]["status"] = "STARTING"
    assert [u.status for u in await runpod.list()] == ["booting"]
    fake.boot_all()
    [listed] = await runpod.list()
    assert (listed.unit_id, listed.status, listed.gpu_model, listed.label) == (
        unit.unit_id,
        "ready",
        "RTX4090",
        "fleet.gpu.p1",
    )
    for status, ours in (("EXITED", "stopped"), ("ERROR", "failed"), ("TERMINATED", "terminated")):
        fake.pods[unit.unit_id]["status"] = status
        assert (await runpod.get(unit.unit_id)).status == ours

    await runpod.destroy(unit.unit_id)
    assert await runpod.list() == []
    with pytest.raises(NotFound):
        await runpod.destroy(unit.unit_id)


async def test_the_fake_refuses_unknown_fields_and_v1_bodies(fake) -> None:
    async with httpx.AsyncClient(
        base_url=fake.url, headers={"Authorization": f"Bearer {fake.api_key}"}
    ) as client:
        v1 = {"name": "x", "imageName": "img", "gpuTypeIds": ["NVIDIA L4"], "gpuCount": 1}
        refused = await client.post("/v2/pods", json=v1)
        assert refused.status_code == 422
        assert any("imageName" in e for e in refused.json()["errors"])
        no_gpu = await client.post("/v2/pods", json={"name": "x", "image": "img"})
        assert no_gpu.status_code == 400
        bad = await client.get("/v2/catalog/gpus", params={"include": "AVAILABILITY"})
        assert bad.status_code == 400  # product is required with include


async def test_create_is_idempotent_by_name(fake, runpod) -> None:
    offer = (await runpod.offers(OfferFilter(gpu_model="L4")))[0]
    first = await runpod.create(offer, 2, "fleet.gpu.p2")
    again = await runpod.create(offer, 2, "fleet.gpu.p2")
    assert sorted(u.unit_id for u in again) == sorted(u.unit_id for u in first)
    assert len(fake.pods) == 2


async def test_a_create_whose_answer_is_lost_is_not_repeated(fake, runpod) -> None:
    offer = (await runpod.offers(OfferFilter(gpu_model="L4")))[0]
    fake.lose_create_answers(1)
    with pytest.raises(Unconfirmed):
        await runpod.create(offer, 1, "fleet.gpu.p3")
    [unit] = await runpod.create(offer, 1, "fleet.gpu.p3")
    assert list(fake.pods) == [unit.unit_id]


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, CapacityError), (403, CapacityError), (402, QuotaExceeded), (422, Permanent)],
)
async def test_each_documented_create_failure(fake, runpod, status: int, error: type) -> None:
    offer = (await runpod.offers(OfferFilter(gpu_model="H100")))[0]
    fake.create_faults.append(problem(status, "Refused", f"refused with {status}"))
    with pytest.raises(error, match=f"refused with {status}"):
        await runpod.create(offer, 1, "fleet.gpu.p4")
    assert fake.pods == {}


async def test_no_stock_is_a_capacity_error(fake, runpod) -> None:
    fake.fail_creates(True)
    offer = (await runpod.offers(OfferFilter(gpu_model="H100")))[0]
    with pytest.raises(CapacityError, match="capacity"):
        await runpod.create(offer, 1, "fleet.gpu.p5")


async def test_retryable_faults(fake, runpod) -> None:
    fake.fail_next(429, retry_after=12)
    with pytest.raises(Retryable) as err:
        await runpod.list()
    assert err.value.after_s == 12
    fake.fail_next(503)
    with pytest.raises(Retryable):
        await runpod.offers(OfferFilter())


async def test_bad_and_missing_keys(fake) -> None:
    bad = RunPodProvider(settings(fake, FLEET_RUNPOD_KEY="rpa_WRONGSECRET"))
    try:
        with pytest.raises(AuthError) as err:
            await bad.list()
    finally:
        await bad.close()
    assert "runpod" in str(err.value) and "RUNPOD_API_KEY" in str(err.value)
    assert "rpa_WRONGSECRET" not in str(err.value)

    none = RunPodProvider(ProviderSettings.from_env("runpod", {}, environ={}))
    with pytest.raises(Unavailable, match="RUNPOD_API_KEY"):
        await none.list()
