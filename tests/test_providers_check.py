"""`fleet providers check` against every provider fake: read-only calls, a field-by-field
table, a clear auth error with a wrong key, a named field when a shape changes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from services.provisioner.providers.shapes import PROBES, check, check_field
from tests.fakes import HypercoreFake, IoNetFake, LambdaFake, RunPodFake, VastFake
from tests.market_helpers import clean_env, fleet


@pytest.fixture
def fakes() -> Iterator[dict[str, Any]]:
    with ExitStack() as stack:
        made = {
            "vastai": stack.enter_context(VastFake()),
            "ionet": stack.enter_context(IoNetFake()),
            "runpod": stack.enter_context(RunPodFake()),
            "lambda": stack.enter_context(LambdaFake()),
            "hypercore": stack.enter_context(HypercoreFake()),
        }
        yield made


def env_of(fakes: dict[str, Any], **extra: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for fake in fakes.values():
        env.update(fake.env())
    return clean_env(**{**env, **extra})


def seed_units(fakes: dict[str, Any]) -> None:
    """One unit at each provider, so the list calls have items to judge."""
    fakes["vastai"].instances[900001] = {
        "id": 900001, "actual_status": "running", "label": "fleet.gpu.u1",
        "gpu_name": "H100 SXM", "dph_total": 2.4, "public_ipaddr": "203.0.113.7",
    }  # fmt: skip
    fakes["ionet"].deployments["d1"] = {
        "id": "d1", "status": "running", "name": "fleet.gpu.u2", "hardware_name": "H100",
    }  # fmt: skip
    fakes["hypercore"].workloads["w1"] = {"cores": 2, "env": ["FLEET_LABEL=fleet.r.u3"]}
    fakes["hypercore"].settle()


async def test_every_fake_matches_what_its_adapter_reads(fakes, tmp_path) -> None:
    seed_units(fakes)
    run = await fleet("providers", "check", "--json", env=env_of(fakes), cwd=tmp_path)

    assert run.code == 0, run.out + run.err
    doc = run.json()
    assert doc["took_s"] < 10
    for name in PROBES:
        result = doc["providers"][name]
        assert result["state"] == "ok", (name, result)
        verdicts = {f["verdict"] for c in result["calls"] for f in c["fields"]}
        assert verdicts <= {"ok", "unchecked"}
    # Read-only: nothing was created at any provider.
    assert all(r.method == "GET" or r.path.endswith("/bundles/") for r in fakes["vastai"].requests)
    assert fakes["runpod"].pods == {} and len(fakes["lambda"].instances) == 0


async def test_the_human_table_names_each_field(fakes, tmp_path) -> None:
    run = await fleet("providers", "check", "--provider", "runpod", env=env_of(fakes), cwd=tmp_path)
    assert run.code == 0, run.err
    assert "runpod     ok" in run.out
    assert "GPU catalog  (GET /v2/catalog/gpus)" in run.out
    assert "gpus[].price.secure" in run.out and "expected number" in run.out
    assert "pods[].status" in run.out  # no pods yet: shown as unchecked, not as a failure


async def test_a_wrong_key_is_a_clear_auth_error(fakes, tmp_path) -> None:
    env = env_of(fakes, FLEET_LAMBDA_KEY="secret_WRONG_lambda")
    run = await fleet("providers", "check", "--provider", "lambda", env=env, cwd=tmp_path)

    assert run.code == 1
    assert "fleet providers check: lambda: the API key from FLEET_LAMBDA_KEY was refused" in run.err
    assert "set FLEET_LAMBDA_KEY or LAMBDA_API_KEY" in run.err
    assert "secret_WRONG_lambda" not in run.out + run.err


async def test_a_changed_shape_names_the_field(fakes, tmp_path) -> None:
    for offer in fakes["vastai"].offers:
        offer["gpu_ram"] = f"{offer['gpu_ram']} MB"  # a provider starts sending strings
    run = await fleet("providers", "check", "--provider", "vastai", env=env_of(fakes), cwd=tmp_path)

    assert run.code == 1
    assert "vastai     mismatch" in run.out
    line = next(x for x in run.out.splitlines() if "offers[].gpu_ram" in x)
    assert "expected number" in line and "got str" in line and "wrong type" in line


async def test_an_unconfigured_provider_named_explicitly_fails(tmp_path) -> None:
    run = await fleet("providers", "check", "--provider", "runpod", env=clean_env(), cwd=tmp_path)
    assert run.code == 1 and "FLEET_RUNPOD_KEY" in run.out
    bad = await fleet("providers", "check", "--provider", "nope", env=clean_env(), cwd=tmp_path)
    assert bad.code == 2 and "unknown provider 'nope'" in bad.err


def test_field_verdicts() -> None:
    doc = {"a": [{"b": 1}, {"b": "x"}], "m": {"k1": {"p": 2}}, "e": [], "z": {"o": None}}
    assert check_field(doc, "a[].b", "int").verdict == "wrong type"
    assert check_field(doc, "a[].b", "int|str").verdict == "ok"
    assert check_field(doc, "m{}.p", "number").verdict == "ok"
    assert check_field(doc, "e[].q", "str").verdict == "unchecked"
    assert check_field(doc, "a[].c", "str").verdict == "missing"
    assert check_field(doc, "a[].c", "str?").verdict == "ok"
    assert check_field(doc, "z.o", "str|null").verdict == "ok"
    [first] = PROBES["hypercore"]
    assert {f.verdict for f in check({"response": {}}, first)} <= {"ok", "unchecked"}
