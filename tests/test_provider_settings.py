"""Provider settings: where keys and URLs come from, redaction, bad values; the retry helper."""

from __future__ import annotations

import pytest

from services.provisioner.providers.base import CapacityError, Retryable
from services.provisioner.providers.registry import build_provider, known_providers
from services.provisioner.providers.settings import ProviderSettings
from services.provisioner.retry import backoff_s, call_with_retry


def test_env_overrides_usual_variable_overrides_toml() -> None:
    toml = {"base_url": "https://vast.example/api/v0/", "api_key": "from-toml"}
    s = ProviderSettings.from_env("vastai", toml, environ={})
    assert (s.base_url, s.api_key, s.key_source) == (
        "https://vast.example/api/v0",
        "from-toml",
        "[providers.vastai] api_key",
    )
    s = ProviderSettings.from_env("vastai", toml, environ={"VAST_API_KEY": "usual"})
    assert (s.api_key, s.key_source) == ("usual", "VAST_API_KEY")
    env = {"VAST_API_KEY": "usual", "FLEET_VASTAI_KEY": "fleet", "FLEET_VASTAI_URL": "http://x"}
    s = ProviderSettings.from_env("vastai", toml, environ=env)
    assert (s.api_key, s.base_url) == ("fleet", "http://x")


def test_key_file_is_read(tmp_path) -> None:
    (tmp_path / "key").write_text("file-secret\n")
    s = ProviderSettings.from_env("runpod", {"api_key_file": str(tmp_path / "key")}, environ={})
    assert s.api_key == "file-secret" and s.configured


def test_key_never_appears_in_repr_or_str() -> None:
    s = ProviderSettings.from_env("lambda", {}, environ={"LAMBDA_API_KEY": "secret_abc_123"})
    assert "secret_abc_123" not in repr(s) and "secret_abc_123" not in str(s)
    assert "***" in repr(s)
    assert "secret_abc_123" not in repr(build_provider("lambda", s))


def test_bad_value_names_the_key() -> None:
    with pytest.raises(ValueError, match=r"\[providers.vastai\].*timeout_s"):
        ProviderSettings.from_env("vastai", {"timeout_s": "soon"}, environ={})


def test_registry_knows_every_provider_and_rejects_unknown_names() -> None:
    assert {"vastai", "ionet", "runpod", "lambda", "hypercore", "sim", "local"} <= set(
        known_providers()
    )
    with pytest.raises(ValueError, match="unknown provider 'aws'"):
        build_provider("aws")


def test_backoff_grows_exponentially_is_capped_and_respects_retry_after() -> None:
    assert [backoff_s(n, base_s=1, max_s=10, rand=1.0) for n in (1, 2, 3, 4, 5)] == [
        1,
        2,
        4,
        8,
        10,
    ]
    assert backoff_s(3, base_s=1, rand=0.0) == 0.0
    assert backoff_s(1, base_s=1, rand=0.1, after_s=12) == 12


async def test_retry_stops_at_non_retryable_errors_and_after_attempts() -> None:
    calls = 0

    async def capacity() -> None:
        nonlocal calls
        calls += 1
        raise CapacityError("vastai", "gone")

    async def nap(_: float) -> None:
        return None

    with pytest.raises(CapacityError):
        await call_with_retry(capacity, sleep=nap)
    assert calls == 1

    async def flaky() -> None:
        raise Retryable("ionet", "503")

    with pytest.raises(Retryable):
        await call_with_retry(flaky, attempts=3, sleep=nap)
