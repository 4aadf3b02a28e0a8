"""Lambda Cloud adapter against the Lambda fake (built from Lambda's OpenAPI) over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

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
)
from services.provisioner.providers.lambdalabs import LambdaProvider
from services.provisioner.providers.registry import build_provider
from services.provisioner.providers.settings import DEFAULT_URLS, ProviderSettings
from tests.fakes import LambdaFake, Reply, Request
from tests.fakes.lambdalabs import _error


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


def test_the_default_host_is_the_one_the_spec_calls_production() -> None:
    assert DEFAULT_URLS["lambda"] == "https://cloud.lambda.ai/api/v1"


async def test_instance_types_become_offers_per_region(fake, lam) -> None:
    offers = await lam.offers(OfferFilter())

    got = {(o.offer_id, o.region): o for o in offers}
    assert got[("gpu_1x_a10", "us-west-1")].usd_per_hour == 0.75
    h100 = got[("gpu_1x_h100_pcie", "us-east-1")]
    assert h100.usd_per_hour == 2.49 and h100.gpu_model == "H100"
    assert ("gpu_1x_h100_pcie", "us-west-3") in got
    a100 = got[("gpu_8x_a100_80gb_sxm4", "")]
    assert a100.gpu_model == "A100-80GB" and a100.num_gpus == 8 and a100.available == 0


async def test_launch_list_terminate_round_trip(fake, lam) -> None:
    offer = next(o for o in await lam.offers(OfferFilter(gpu_model="A10")))

    units = await lam.create(offer, 2, "fleet.gpu.l1")
    launches = [r for r in fake.requests if r.path == "/instance-operations/launch"]
    assert [r.body for r in launches] == 2 * [
        {
            "region_name": "us-west-1",
            "instance_type_name": "gpu_1x_a10",
            "ssh_key_names": ["fleet-key"],
            "name": "fleet.gpu.l1",
        }
    ]
    listed = await lam.list()
    assert {u.unit_id for u in listed} == {u.unit_id for u in units}
    assert all(u.status == "booting" and u.gpu_model == "A10" for u in listed)

    await lam.destroy(units[0].unit_id)
    assert [u.unit_id for u in await lam.list()] == [units[1].unit_id]
    with pytest.raises(NotFound):
        await lam.destroy(units[0].unit_id)


@pytest.mark.parametrize(
    ("status", "ours"),
    [("active", "ready"), ("unhealthy", "failed"), ("terminating", "terminated"),
     ("terminated", "terminated"), ("preempted", "failed"), ("booting", "booting")],
)  # fmt: skip
async def test_every_documented_status(fake, lam, status: str, ours: str) -> None:
    offer = next(o for o in await lam.offers(OfferFilter(gpu_model="A10")))
    [unit] = await lam.create(offer, 1, "fleet.gpu.l2")
    fake.instances[unit.unit_id]["status"] = status
    assert [u.status for u in await lam.list()] == [ours]


async def test_capacity_running_out_part_way_and_the_retry_tops_up(fake, lam) -> None:
    offer = next(o for o in await lam.offers(OfferFilter(gpu_model="A10")))
    fake.launch_limit = 1
    first = await lam.create(offer, 3, "fleet.gpu.l3")
    assert len(first) == 1

    fake.launch_limit = None
    again = await lam.create(offer, 3, "fleet.gpu.l3")
    assert len(again) == 3 and len(fake.instances) == 3
    assert first[0].unit_id in {u.unit_id for u in again}


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (400, "instance-operations/launch/insufficient-capacity", CapacityError),
        (400, "global/quota-exceeded", QuotaExceeded),
        (400, "global/invalid-parameters", Permanent),
        (403, "global/account-inactive", QuotaExceeded),
        (404, "global/object-does-not-exist", CapacityError),
    ],
)
async def test_each_documented_launch_error(fake, lam, status, code, error) -> None:
    offer = next(o for o in await lam.offers(OfferFilter(gpu_model="A10")))
    fake.create_faults.append(_error(status, code, f"refused: {code}"))
    with pytest.raises(error, match=f"refused: {code}"):
        await lam.create(offer, 1, "fleet.gpu.l4")
    assert fake.instances == {}


async def test_missing_ssh_key_says_what_to_set(fake) -> None:
    provider = LambdaProvider(settings(fake, ssh_key=""))
    try:
        offer = next(o for o in await provider.offers(OfferFilter(gpu_model="A10")))
        with pytest.raises(Permanent, match="ssh_key_name"):
            await provider.create(offer, 1, "fleet.gpu.l5")
    finally:
        await provider.close()


async def test_a_redirect_to_another_host_never_carries_the_key(fake) -> None:
    with LambdaFake() as old_host:
        old_host.redirect_to = fake.url  # the deprecated host moved to the new one
        provider = LambdaProvider(settings(old_host))
        try:
            with pytest.raises(Permanent, match="not followed") as err:
                await provider.list()
        finally:
            await provider.close()
    assert "FLEET_LAMBDA_URL" in str(err.value)
    assert fake.requests == []  # nothing, and so no key, reached the other host
    assert old_host.requests[0].headers["authorization"] == f"Bearer {old_host.api_key}"


class MovedPathLambda(LambdaFake):
    """Lambda answering the old `/instances/` path with a 308 to `/instances` on itself."""

    def route(self, req: Request) -> Reply:
        if req.path == "/instances/":
            return Reply(308, headers={"Location": self.url + "/instances"})
        return super().route(req)


async def test_a_redirect_on_the_same_host_is_followed() -> None:
    with MovedPathLambda() as fake:
        provider = LambdaProvider(settings(fake))
        try:
            resp = await provider.http.request("GET", f"{fake.url}/instances/")
        finally:
            await provider.close()
    assert resp.status_code == 200 and resp.json() == {"data": []}
    assert [r.path for r in fake.requests] == ["/instances/", "/instances"]


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
