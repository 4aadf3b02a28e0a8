"""`fleet offers` and `fleet place` against the Vast.ai and io.net fakes: straight from the
providers (--direct, or when no provisioner answers) and through a running provisioner."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.provisioner.service import ProvisionerService
from tests.fakes import IoNetFake, VastFake
from tests.market_helpers import clean_env, fleet
from tests.provisioner_helpers import settings

DEAD_NATS = "nats://127.0.0.1:1"


@pytest.fixture
def vast() -> Iterator[VastFake]:
    with VastFake() as f:
        for offer in f.offers:
            offer["storage_cost"] = 0.0  # prices here do not depend on the disk asked for
        yield f


@pytest.fixture
def ionet() -> Iterator[IoNetFake]:
    with IoNetFake() as f:
        yield f


def fake_env(*fakes: VastFake | IoNetFake) -> dict[str, str]:
    env: dict[str, str] = {}
    for f in fakes:
        env.update(f.env())
    return clean_env(**env)


def prices(doc: dict) -> list[float]:
    return [o["usd_per_hour"] for o in doc["offers"]]


async def test_direct_offers_list_both_providers_cheapest_first(vast, ionet, tmp_path) -> None:
    run = await fleet(
        "offers", "--gpu", "H100", "--direct", "--json", env=fake_env(vast, ionet), cwd=tmp_path
    )

    assert run.code == 0, run.err
    doc = run.json()
    assert doc["source"] == "direct"
    assert [(o["provider"], o["usd_per_hour"]) for o in doc["offers"]] == [
        ("ionet", 1.99),
        ("vastai", 2.40),
        ("ionet", 3.98),  # two H100s in one VM
    ]
    assert prices(doc) == sorted(prices(doc))
    assert doc["providers"]["vastai"]["state"] == "ok"
    assert doc["providers"]["ionet"]["state"] == "ok"
    # Providers with no credentials are listed as unavailable with what to set, not errors.
    assert doc["providers"]["runpod"]["state"] == "unavailable"
    assert "FLEET_RUNPOD_KEY" in doc["providers"]["runpod"]["detail"]
    assert doc["providers"]["hypercore"]["state"] == "unavailable"
    assert "FLEET_HYPERCORE_URL" in doc["providers"]["hypercore"]["detail"]
    # The server-side filter went to Vast in its own spelling.
    search = next(r for r in vast.requests if r.path == "/api/v0/bundles/")
    assert search.body["gpu_name"] == {"in": ["H100 SXM", "H100 PCIE"]}


async def test_human_table_and_fallback_when_no_provisioner_answers(vast, ionet, tmp_path) -> None:
    run = await fleet(
        "offers", "--min-vram", "40", "--nats", DEAD_NATS, env=fake_env(vast, ionet), cwd=tmp_path
    )

    assert run.code == 0, run.err
    assert "no NATS server at nats://127.0.0.1:1" in run.err
    assert "asking the providers directly" in run.err
    lines = run.out.splitlines()
    rows = [line for line in lines if line.startswith("│")]
    # A100 40 GB on Vast ($0.90), A100 80 GB on io.net ($1.19), H100 io.net, H100 Vast,
    # then two H100s in one io.net VM.
    providers = [r.split("│")[1].strip() for r in rows]
    assert providers == ["vastai", "ionet", "ionet", "vastai", "ionet"]
    assert "0.90" in rows[0] and "A100-40GB" in rows[0] and "98.0%" in rows[0]
    assert "runpod" in run.out and "unavailable" in run.out
    assert "[providers.runpod]" in run.out  # rich markup did not eat the setting's name


async def test_place_picks_the_cheapest_feasible_offer_and_explains(vast, ionet, tmp_path) -> None:
    env = fake_env(vast, ionet)
    run = await fleet("place", "--vram", "40", "--direct", env=env, cwd=tmp_path)

    assert run.code == 0, run.err
    assert "Chose vastai A100-40GB (40 GB VRAM) at $0.90/h" in run.out
    assert "Runner-up: ionet A100-80GB (80 GB VRAM) at $1.19/h (+$0.29/h)" in run.out
    choice = next(line for line in run.out.splitlines() if "choice" in line)
    assert "vastai" in choice

    as_json = (
        await fleet("place", "--vram", "40", "--direct", "--json", env=env, cwd=tmp_path)
    ).json()
    assert as_json["placement"]["ok"] is True
    assert as_json["placement"]["offer"]["offer_id"] == "5004"


async def test_place_exits_1_with_the_reason_when_nothing_fits(vast, ionet, tmp_path) -> None:
    run = await fleet(
        "place", "--vram", "40", "--max-usd-per-hour", "0.5", "--direct",
        env=fake_env(vast, ionet), cwd=tmp_path,
    )  # fmt: skip

    assert run.code == 1
    assert "Nothing fits. No offer fits:" in run.out
    assert "above $0.50/h" in run.out and "below 40 GB VRAM" in run.out


async def test_bad_credentials_name_the_provider_and_the_setting(vast, ionet, tmp_path) -> None:
    env = fake_env(vast, ionet)
    env["FLEET_VASTAI_KEY"] = "wrong-key"

    run = await fleet("offers", "--direct", "--json", env=env, cwd=tmp_path)

    # Exit 1: a configured provider refused its key. The others are still listed.
    assert run.code == 1
    doc = run.json()
    assert doc["providers"]["vastai"]["state"] == "auth"
    assert {o["provider"] for o in doc["offers"]} == {"ionet"}
    assert "fleet offers: vastai: the API key from FLEET_VASTAI_KEY was refused (401)" in run.err
    assert "set FLEET_VASTAI_KEY or VAST_API_KEY" in run.err
    assert "wrong-key" not in run.err + run.out  # the secret is never printed


async def test_bad_input_is_refused_naming_the_option(tmp_path) -> None:
    run = await fleet("place", "--vram", "-4", "--direct", env=clean_env(), cwd=tmp_path)
    assert run.code != 0 and "--min-vram/--vram" in run.err

    run = await fleet("offers", "--provider", "nope", "--direct", env=clean_env(), cwd=tmp_path)
    assert run.code == 2 and "unknown provider 'nope'" in run.err


async def test_offers_and_place_through_a_running_provisioner(
    nats_url, vast, ionet, tmp_path
) -> None:
    providers = {
        "vastai": {"base_url": vast.url, "api_key": vast.api_key, "timeout_s": 2.0},
        "ionet": {"base_url": ionet.url, "api_key": ionet.api_key, "timeout_s": 2.0},
    }
    svc = ProvisionerService(
        settings(
            tmp_path, {"gpu": {"gpu_model": "H100", "providers": ["vastai", "ionet"]}}, providers
        ),
        nats_url=nats_url,
    )
    await svc.start()
    try:
        env = clean_env()  # no provider settings: the answers can only come from the provisioner
        run = await fleet(
            "offers", "--gpu", "H100", "--json", "--nats", nats_url, env=env, cwd=tmp_path
        )
        assert run.code == 0, run.err
        doc = run.json()
        assert doc["source"] == "provisioner"
        assert [(o["provider"], o["usd_per_hour"]) for o in doc["offers"]] == [
            ("ionet", 1.99),
            ("vastai", 2.40),
            ("ionet", 3.98),
        ]
        assert doc["providers"]["vastai"]["state"] == "ok"

        run = await fleet("place", "--vram", "40", "--nats", nats_url, env=env, cwd=tmp_path)
        assert run.code == 0, run.err
        assert "Chose vastai A100-40GB (40 GB VRAM) at $0.90/h" in run.out
        assert "from the provisioner" in run.out

        # A provider the provisioner does not have is named, not "No offers match."
        for verb in (["offers"], ["place", "--vram", "40"]):
            run = await fleet(
                *verb, "--provider", "vastia", "--nats", nats_url, env=env, cwd=tmp_path
            )
            assert (
                run.code != 0 and "unknown provider 'vastia'; providers: ionet, vastai" in run.err
            )
    finally:
        await svc.stop()


async def test_a_refused_key_at_the_provisioner_is_reported_too(
    nats_url, vast, ionet, tmp_path
) -> None:
    providers = {
        "vastai": {"base_url": vast.url, "api_key": "wrong-key", "timeout_s": 2.0},
        "ionet": {"base_url": ionet.url, "api_key": ionet.api_key, "timeout_s": 2.0},
    }
    pools = {"gpu": {"gpu_model": "H100", "providers": ["vastai", "ionet"]}}
    svc = ProvisionerService(settings(tmp_path, pools, providers), nats_url=nats_url)
    await svc.start()
    try:
        run = await fleet("offers", "--json", "--nats", nats_url, env=clean_env(), cwd=tmp_path)
    finally:
        await svc.stop()
    assert run.code == 1
    doc = run.json()
    assert doc["source"] == "provisioner"
    assert doc["providers"]["vastai"]["state"] == "auth"
    assert "[providers.vastai] api_key was refused (401)" in doc["providers"]["vastai"]["detail"]
    assert {o["provider"] for o in doc["offers"]} == {"ionet"}
    assert "fleet offers: vastai:" in run.err and "wrong-key" not in run.err + run.out


async def test_place_leaves_out_hardware_that_cannot_run_the_runtime(tmp_path) -> None:
    from tests.fakes import RunPodFake

    with RunPodFake() as runpod:
        next(g for g in runpod.gpus if g["manufacturer"] == "AMD")["_availability"] = "HIGH"
        env = clean_env(**runpod.env())
        cuda = await fleet("place", "--vram", "100", "--direct", env=env, cwd=tmp_path)
        rocm = await fleet(
            "place", "--vram", "100", "--runtime", "rocm", "--direct", env=env, cwd=tmp_path
        )
    assert cuda.code == 1 and "1 cannot run CUDA" in cuda.out  # the MI300X, by default
    assert rocm.code == 0, rocm.err
    assert "Chose runpod MI300X (192 GB VRAM)" in rocm.out
