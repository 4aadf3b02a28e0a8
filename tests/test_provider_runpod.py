"""RunPod adapter against the local RunPod fake over real HTTP."""

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
from services.provisioner.providers.runpod import RunPodProvider
from services.provisioner.providers.settings import ProviderSettings
from tests.fakes import RunPodFake


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


async def test_gpu_types_become_offers(fake, runpod) -> None:
    offers = await runpod.offers(OfferFilter(min_vram_gb=24))

    assert [(o.gpu_model, o.usd_per_hour) for o in offers] == [
        ("RTX4090", 0.69),
        ("H100", 2.99),
        ("L4", 0.43),
    ]
    gql = fake.requests[-1]
    assert gql.path == "/graphql" and "gpuTypes" in gql.body["query"]
    assert gql.headers["authorization"] == f"Bearer {fake.api_key}"


async def test_pod_round_trip_parses_string_cost(fake, runpod) -> None:
    offer = (await runpod.offers(OfferFilter(gpu_model="RTX 4090", num_gpus=2)))[0]
    assert offer.usd_per_hour == pytest.approx(1.38)

    units = await runpod.create(offer, 1, "cmd-rp-1")
    post = next(r for r in fake.requests if r.method == "POST" and r.path == "/pods")
    assert post.body["gpuTypeIds"] == ["NVIDIA GeForce RTX 4090"] and post.body["gpuCount"] == 2
    assert post.body["name"] == "cmd-rp-1" and post.body["imageName"] == "ghcr.io/acme/worker:1"
    assert units[0].usd_per_hour == pytest.approx(1.38)  # from the string "1.38"

    listed = await runpod.list()
    assert [(u.unit_id, u.status, u.gpu_model, u.label) for u in listed] == [
        (units[0].unit_id, "ready", "RTX4090", "cmd-rp-1")
    ]
    assert (await runpod.get(units[0].unit_id)).usd_per_hour == pytest.approx(1.38)

    await runpod.destroy(units[0].unit_id)
    assert await runpod.list() == []
    with pytest.raises(NotFound):
        await runpod.destroy(units[0].unit_id)


async def test_unparseable_cost_is_zero_not_a_crash(fake, runpod) -> None:
    fake.pods["podX"] = {"id": "podX", "name": "n", "desiredStatus": "EXITED", "costPerHr": "n/a"}
    [unit] = await runpod.list()
    assert unit.usd_per_hour == 0.0 and unit.status == "stopped"


async def test_create_is_idempotent_by_key(fake, runpod) -> None:
    offer = (await runpod.offers(OfferFilter(gpu_model="L4")))[0]
    first = await runpod.create(offer, 2, "cmd-rp-2")
    again = await runpod.create(offer, 2, "cmd-rp-2")
    assert sorted(u.unit_id for u in again) == sorted(u.unit_id for u in first)
    assert len(fake.pods) == 2


async def test_no_instances_available_is_a_capacity_error(fake, runpod) -> None:
    offer = (await runpod.offers(OfferFilter(gpu_model="H100")))[0]
    fake.fail_creates(True)
    with pytest.raises(CapacityError, match="no longer any instances"):
        await runpod.create(offer, 1, "cmd-rp-3")


async def test_retryable_faults(fake, runpod) -> None:
    fake.fail_next(429)
    with pytest.raises(Retryable):
        await runpod.list()
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
