"""Settings: fleet.toml plus FLEET_* overrides; a bad value fails naming the key and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from services.kit.config import ConfigError, KitSettings, load_settings, resolve_nats_url

REPO = Path(__file__).resolve().parents[1]


class Budget(msgspec.Struct, kw_only=True):
    daily_usd: float = 100.0


class WithBudget(KitSettings, kw_only=True):
    budget: Budget = msgspec.field(default_factory=Budget)
    pools: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)


def test_toml_then_environment_then_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "fleet.toml"
    cfg.write_text("[budget]\ndaily_usd = 250\n[pools.h100]\nmax = 4\n")
    s = load_settings(WithBudget, str(cfg), env={"FLEET_POOLS__H100__MAX": "9"})
    assert s.budget.daily_usd == 250.0
    assert s.pools == {"h100": {"max": 9}}
    assert s.http.port == 0
    s = load_settings(WithBudget, str(cfg), env={"FLEET_BUDGET__DAILY_USD": "500"})
    assert s.budget.daily_usd == 500.0


@pytest.mark.parametrize(
    "env, key, var",
    [
        ({"FLEET_BUDGET__DAILY_USD": "lots"}, "budget.daily_usd", "FLEET_BUDGET__DAILY_USD"),
        ({"FLEET_HTTP__PORT": "[1, 2]"}, "http.port", "FLEET_HTTP__PORT"),
        ({"FLEET_LOG__LEVEL": "chatty"}, "log.level", "FLEET_LOG__LEVEL"),
    ],
)
def test_a_bad_value_names_the_key_and_the_variable(
    env: dict[str, str], key: str, var: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(WithBudget, env=env)
    assert key in str(err.value) and var in str(err.value)


def test_broken_toml_and_missing_file_say_so(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.toml"
    bad.write_text("[budget\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(WithBudget, str(bad), env={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(WithBudget, str(tmp_path / "nope.toml"), env={})


def test_nats_url_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLEET_NATS_URL", raising=False)
    assert resolve_nats_url() == "nats://127.0.0.1:4222"
    (tmp_path / ".fleet").mkdir()
    (tmp_path / ".fleet" / "nats.url").write_text("nats://127.0.0.1:5000\n")
    assert resolve_nats_url() == "nats://127.0.0.1:5000"
    monkeypatch.setenv("FLEET_NATS_URL", "nats://env:4222")
    assert resolve_nats_url() == "nats://env:4222"
    assert resolve_nats_url("nats://flag:4222") == "nats://flag:4222"


def test_a_service_with_a_bad_setting_exits_at_start_with_the_reason(tmp_path: Path) -> None:
    from tools.registry import available

    names = available()
    if not names:
        pytest.skip("no service built yet")
    env = {"FLEET_HTTP__PORT": "not-a-port", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "tools", "run", names[0]],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 2
    assert "http.port" in out.stderr and "FLEET_HTTP__PORT" in out.stderr
