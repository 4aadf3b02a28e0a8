"""Lambda Cloud adapter against the local Lambda fake over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from contracts.offers import OfferFilter
from services.provisioner.providers.base import (
    AuthError,
    CapacityError,
    NotFound,
    Permanent,
    Retryable,
    Unavailable,
)
from services.provisioner.providers.lambdalabs import LambdaProvider
from services.provisioner.providers.registry import build_provider
from services.provisioner.providers.settings import ProviderSettings
from tests.fakes import LambdaFake


def settings(fake: LambdaFake, ssh_key: str = "fleet-key", **env: str) -> ProviderSettings:
    return ProviderSettings.from_env(
        "lambda", {"timeout_s": 0.5, "ssh_key_name": ssh_key}, environ={**fake.env(), **env}
    )


@pytest.fixture
def fake() -> Iterator[LambdaFake]:
    with LambdaFake() as f:
        yield f


@pytest.fixture
async def lam(fake: LambdaFake) -> AsyncIterator[LambdaProvider]:
    provider = build_provider("lambda", settings(fake))
    assert isinstance(provider, LambdaProvider)
    yield provider
    await provider.close()


async def test_instance_types_become_offers_per_region(fake, lam) -> None:
    offers = await lam.offers(OfferFilter())

    got = {(o.offer_id, o.region): o for o in offers}
    assert got[("gpu_1x_a10", "us-west-1")].usd_per_hour == 0.75
    h100 = got[("gpu_1x_h100_pcie", "us-east-1")]
    assert h100.usd_per_hour == 2.49 and h100.gpu_model == "H100"  # price was a string
    assert ("gpu_1x_h100_pcie", "us-west-3") in got
    a100 = got[("gpu_8x_a100_80gb_sxm4", "")]
    assert a100.gpu_model == "A100-80GB" and a100.num_gpus == 8 and a100.available == 0


async def test_launch_list_terminate_round_trip(fake, lam) -> None:
    offer = next(o for o in await lam.offers(OfferFilter(gpu_model="A10")))

    units = await lam.create(offer, 2, "cmd-l-1")
    launch = next(r for r in fake.requests if r.path == "/instance-operations/launch")
    assert launch.body == {
        "region_name": "us-west-1",
        "instance_type_name": "gpu_1x_a10",
        "quantity": 2,
        "name": "cmd-l-1",
        "ssh_key_names": ["fleet-key"],
    }
    listed = await lam.list()
    assert {u.unit_id for u in listed} == {u.unit_id for u in units}
    assert all(u.status == "booting" and u.gpu_model == "A10" for u in listed)

    await lam.destroy(units[0].unit_id)
    assert [u.unit_id for u in await lam.list()] == [units[1].unit_id]
    with pytest.raises(NotFound):
        await lam.destroy(units[0].unit_id)


async def test_partial_launch_returns_what_was_launched_and_retry_tops_up(fake, lam) -> None:
    offer = next(o for o in await lam.offers(OfferFilter(gpu_model="A10")))
    fake.launch_limit = 1
    first = await lam.create(offer, 3, "cmd-l-2")
    assert len(first) == 1

    fake.launch_limit = None
    again = await lam.create(offer, 3, "cmd-l-2")
    assert len(again) == 3 and len(fake.instances) == 3
    assert first[0].unit_id in {u.unit_id for u in again}
    assert fake.requests[-1].body["quantity"] == 2


async def test_insufficient_capacity_is_a_capacity_error(fake, lam) -> None:
    offer = next(o for o in await lam.offers(OfferFilter(gpu_model="A10")))
    fake.fail_creates(True)
    with pytest.raises(CapacityError, match="Not enough capacity"):
        await lam.create(offer, 1, "cmd-l-3")


async def test_missing_ssh_key_says_what_to_set(fake) -> None:
    provider = LambdaProvider(settings(fake, ssh_key=""))
    try:
        offer = next(o for o in await provider.offers(OfferFilter(gpu_model="A10")))
        with pytest.raises(Permanent, match="ssh_key_name"):
            await provider.create(offer, 1, "cmd-l-4")
    finally:
        await provider.close()


async def test_retryable_faults(fake, lam) -> None:
    fake.fail_next(429, retry_after=12)
    with pytest.raises(Retryable) as err:
        await lam.list()
    assert err.value.after_s == 12
    fake.fail_next(500)
    with pytest.raises(Retryable):
        await lam.offers(OfferFilter())


async def test_bad_and_missing_keys(fake) -> None:
    bad = LambdaProvider(settings(fake, FLEET_LAMBDA_KEY="secret_WRONG_lambda"))
    try:
        with pytest.raises(AuthError) as err:
            await bad.list()
    finally:
        await bad.close()
    text = str(err.value)
    assert text.startswith("lambda:") and "FLEET_LAMBDA_KEY or LAMBDA_API_KEY" in text
    assert "secret_WRONG_lambda" not in text

    none = LambdaProvider(ProviderSettings.from_env("lambda", {}, environ={}))
    with pytest.raises(Unavailable, match="LAMBDA_API_KEY"):
        await none.offers(OfferFilter())
