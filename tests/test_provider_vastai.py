"""Vast.ai adapter against the local Vast fake over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from contracts.offers import Offer, OfferFilter
from services.provisioner.providers.base import (
    AuthError,
    CapacityError,
    NotFound,
    Retryable,
    Unavailable,
    Unconfirmed,
)
from services.provisioner.providers.registry import build_provider
from services.provisioner.providers.settings import ProviderSettings
from services.provisioner.providers.vastai import VastAiProvider
from services.provisioner.retry import call_with_retry
from tests.fakes import VastFake


@pytest.fixture
def fake() -> Iterator[VastFake]:
    with VastFake() as f:
        yield f


def settings(fake: VastFake, key: str | None = None) -> ProviderSettings:
    env = fake.env()
    if key is not None:
        env["FLEET_VASTAI_KEY"] = key
    return ProviderSettings.from_env("vastai", {"timeout_s": 0.5}, environ=env)


@pytest.fixture
async def vast(fake: VastFake) -> AsyncIterator[VastAiProvider]:
    provider = build_provider("vastai", settings(fake))
    assert isinstance(provider, VastAiProvider)
    yield provider
    await provider.close()


async def test_offers_are_searched_with_vast_filters_and_normalised(fake, vast) -> None:
    offers = await vast.offers(OfferFilter(gpu_model="RTX4090", max_usd_per_hour=1.0))

    assert [o.offer_id for o in offers] == ["5002", "5001"]  # cheapest first
    assert {o.gpu_model for o in offers} == {"RTX4090"}
    assert offers[0].vram_gb == 24
    assert offers[0].usd_per_hour == pytest.approx(0.31 + 0.1 * 20 / 730)  # with 20 GB disk
    search = next(r for r in fake.requests if r.path == "/api/v0/bundles/")
    assert search.body["allocated_storage"] == 20
    assert search.headers["authorization"] == f"Bearer {fake.api_key}"
    assert search.body["gpu_name"] == {"eq": "RTX 4090"}
    assert search.body["rentable"] == {"eq": True}
    assert search.body["order"] == [["dph_total", "asc"]]
    assert search.body["type"] == "on-demand"


async def test_min_vram_is_sent_in_megabytes(fake, vast) -> None:
    offers = await vast.offers(OfferFilter(min_vram_gb=80))

    assert [o.gpu_model for o in offers] == ["H100"]
    assert fake.requests[-1].body["gpu_ram"] == {"gte": 80000}


async def test_create_list_show_destroy_round_trip(fake, vast) -> None:
    offer = (await vast.offers(OfferFilter(gpu_model="H100")))[0]

    units = await vast.create(offer, 2, "cmd-42")
    assert len(units) == 2 and all(u.status == "booting" for u in units)
    assert {u.label for u in units} == {"cmd-42"}
    put = next(r for r in fake.requests if r.method == "PUT")
    assert put.path == "/api/v0/asks/5003/" and put.body["label"] == "cmd-42"

    fake.boot_all()
    listed = {u.unit_id: u for u in await vast.list()}
    assert set(listed) == {u.unit_id for u in units}
    assert all(u.status == "ready" and u.gpu_model == "H100" for u in listed.values())
    shown = await vast.get(units[0].unit_id)
    assert shown.status == "ready" and shown.usd_per_hour == 2.40
    assert not any(r.path == "/api/v0/instances/" for r in fake.requests)  # deprecated list

    for unit in units:
        await vast.destroy(unit.unit_id)
    assert await vast.list() == []
    with pytest.raises(NotFound):
        await vast.destroy(units[0].unit_id)
    with pytest.raises(NotFound):
        await vast.get(units[0].unit_id)


async def test_create_is_idempotent_by_key(fake, vast) -> None:
    offer = (await vast.offers(OfferFilter(gpu_model="RTX4090")))[0]

    first = await vast.create(offer, 1, "cmd-7")
    again = await vast.create(offer, 1, "cmd-7")

    assert [u.unit_id for u in again] == [u.unit_id for u in first]
    assert len(fake.instances) == 1


async def test_plain_text_429_is_retryable_and_retry_succeeds(fake, vast) -> None:
    fake.fail_next(429)
    with pytest.raises(Retryable) as err:
        await vast.list()
    assert err.value.after_s is None  # Vast sends no Retry-After
    assert "too frequent" in str(err.value)

    waits: list[float] = []

    async def no_sleep(s: float) -> None:
        waits.append(s)

    fake.fail_next(429, n=2)
    assert await call_with_retry(vast.list, sleep=no_sleep, rand=lambda: 0.5) == []
    assert len(waits) == 2 and waits[1] > waits[0]


async def test_5xx_and_timeouts_are_retryable_and_retry_after_is_honoured(fake, vast) -> None:
    fake.fail_next(503, retry_after=7)
    with pytest.raises(Retryable) as err:
        await vast.offers(OfferFilter())
    assert err.value.after_s == 7

    fake.fail_next("timeout")
    with pytest.raises(Retryable, match="timed out"):
        await vast.list()


async def test_gone_offer_is_a_capacity_error(fake, vast) -> None:
    offer = (await vast.offers(OfferFilter(gpu_model="H100")))[0]
    fake.fail_creates(True)
    with pytest.raises(CapacityError, match="no longer available"):
        await vast.create(offer, 1, "cmd-1")

    fake.fail_creates(False)
    gone = Offer(provider="vastai", offer_id="999999", gpu_model="H100")
    with pytest.raises(CapacityError):
        await vast.create(gone, 1, "cmd-2")
    assert fake.instances == {}


async def test_bad_key_names_provider_and_setting_without_leaking_it(fake) -> None:
    bad = "vast-WRONG-secret-5566"
    provider = VastAiProvider(settings(fake, key=bad))
    try:
        with pytest.raises(AuthError) as err:
            await provider.offers(OfferFilter())
    finally:
        await provider.close()
    text = str(err.value)
    assert "vastai" in text and "FLEET_VASTAI_KEY or VAST_API_KEY" in text
    assert bad not in text and bad not in repr(err.value)
    assert bad not in repr(provider) and bad not in repr(provider.settings)


async def test_missing_credentials_make_it_unavailable_not_broken(fake) -> None:
    provider = VastAiProvider(
        ProviderSettings.from_env("vastai", {}, environ={"FLEET_VASTAI_URL": fake.url})
    )
    assert provider.available is False
    with pytest.raises(Unavailable, match="VAST_API_KEY"):
        await provider.offers(OfferFilter())
    await provider.close()
    assert fake.requests == []


async def test_usual_vast_variable_is_read(fake) -> None:
    env = {"FLEET_VASTAI_URL": fake.url, "VAST_API_KEY": fake.api_key}
    provider = VastAiProvider(ProviderSettings.from_env("vastai", {}, environ=env))
    try:
        assert provider.available
        assert await provider.list() == []
    finally:
        await provider.close()


async def test_offers_are_priced_for_the_disk_that_will_be_rented(fake) -> None:
    small = VastAiProvider(ProviderSettings.from_env("vastai", {"disk_gb": 5}, fake.env()))
    big = VastAiProvider(ProviderSettings.from_env("vastai", {"disk_gb": 500}, fake.env()))
    try:
        [cheap] = await small.offers(OfferFilter(gpu_model="H100"))
        [dear] = await big.offers(OfferFilter(gpu_model="H100"))
    finally:
        await small.close()
        await big.close()
    assert dear.usd_per_hour - cheap.usd_per_hour == pytest.approx(0.1 * 495 / 730, abs=1e-5)


async def test_the_instance_list_follows_next_token(fake, vast) -> None:
    for i in range(60):
        fake.instances[i + 1] = {"id": i + 1, "actual_status": "running", "label": f"l{i}"}

    assert len(await vast.list()) == 60
    pages = [r.query.get("after_token") for r in fake.requests if r.path == "/api/v1/instances/"]
    assert pages == [None, "tok25", "tok50"]


async def test_an_old_root_ending_in_api_v0_still_works(fake) -> None:
    env = {"FLEET_VASTAI_URL": fake.url + "/api/v0", "FLEET_VASTAI_KEY": fake.api_key}
    provider = VastAiProvider(ProviderSettings.from_env("vastai", {}, environ=env))
    try:
        assert await provider.list() == []
    finally:
        await provider.close()
    assert fake.requests[-1].path == "/api/v1/instances/"


async def test_a_rent_whose_answer_is_lost_is_not_rented_again(fake, vast) -> None:
    offer = (await vast.offers(OfferFilter(gpu_model="H100")))[0]
    fake.lose_create_answers(1)
    with pytest.raises(Unconfirmed):
        await vast.create(offer, 1, "cmd-late")
    [unit] = await vast.create(offer, 1, "cmd-late")
    assert list(fake.instances) == [int(unit.unit_id)]


async def test_the_fake_refuses_a_search_with_an_unknown_operator(fake) -> None:
    import httpx

    async with httpx.AsyncClient(
        base_url=fake.url, headers={"Authorization": f"Bearer {fake.api_key}"}
    ) as client:
        bad = await client.post("/api/v0/bundles/", json={"gpu_ram": {"atleast": 8}})
    assert bad.status_code == 400 and bad.json()["success"] is False


@pytest.mark.parametrize(
    ("actual", "ours"),
    [(None, "booting"), ("loading", "booting"), ("running", "ready"), ("stopped", "stopped"),
     ("exited", "stopped"), ("frozen", "stopped"), ("rebooting", "booting"),
     ("unknown", "booting"), ("offline", "failed")],
)  # fmt: skip
async def test_every_documented_instance_status(fake, vast, actual, ours) -> None:
    fake.instances[1] = {"id": 1, "actual_status": actual, "label": "x", "dph_total": 1.0}
    [unit] = await vast.list()
    assert unit.status == ours


async def test_a_refused_rent_is_permanent_and_no_credit_is_quota(fake, vast) -> None:
    from services.provisioner.providers.base import Permanent, QuotaExceeded
    from tests.fakes import Reply

    offer = (await vast.offers(OfferFilter(gpu_model="H100")))[0]
    fake.create_faults.append(
        Reply(400, {"success": False, "error": "invalid_args", "msg": "bad image"})
    )
    with pytest.raises(Permanent, match="bad image"):
        await vast.create(offer, 1, "cmd-p")
    fake.create_faults.append(
        Reply(400, {"success": False, "error": "insufficient_credit", "msg": "Not enough credit"})
    )
    with pytest.raises(QuotaExceeded, match="credit"):
        await vast.create(offer, 1, "cmd-q")
