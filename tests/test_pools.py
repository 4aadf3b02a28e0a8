"""`[pools.<pool>]` is one type: every service reads a pool table the same way, with
one default per key, and a misspelt key in any section fails naming it, where it
came from and the closest valid key."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from services.kit.config import ConfigError, check_sections, load_settings
from services.kit.pools import PoolConfig
from services.scaler.policy import Policy
from services.scaler.settings import policies, policy_of
from tools.configcheck import check, settings_type
from tools.registry import ORDER, load

REPO = Path(__file__).resolve().parents[1]
SHIPPED = [
    REPO / "tools/demo/fleet.toml",
    REPO / "tools/demo/agents.toml",
    REPO / "deploy/fleet.example.toml",
]


def test_every_scaler_policy_key_is_a_pool_key_with_the_same_default() -> None:
    # A Policy field missing from PoolConfig could not be configured per pool; a
    # different default would make `fleet replay` and a configured pool disagree.
    pool_keys = {f.name for f in msgspec.structs.fields(PoolConfig)}
    missing = [f.name for f in msgspec.structs.fields(Policy) if f.name not in pool_keys]
    assert not missing, f"add {missing} to services/kit/pools.py PoolConfig"
    assert policy_of(PoolConfig()) == Policy()


def test_one_pool_table_means_the_same_to_every_service(tmp_path: Path) -> None:
    cfg = tmp_path / "fleet.toml"
    cfg.write_text('[pools.h100]\ngpu_model = "H100"\nmax = 4\n')
    seen = {
        name: load_settings(settings_type(name), str(cfg), env={}).pools["h100"]  # type: ignore[attr-defined]
        for name in ("watcher", "scaler", "costguard", "provisioner")
    }
    assert all(pool == seen["scaler"] for pool in seen.values())
    _, by_pool = policies(load_settings(settings_type("scaler"), str(cfg), env={}))
    scaler = by_pool["h100"]
    provisioner = seen["provisioner"]
    assert (scaler.min, scaler.max, scaler.unit_capacity) == (1, 4, 8.0)
    assert (provisioner.min, provisioner.max, provisioner.unit_capacity) == (1, 4, 8.0)
    assert seen["costguard"].max_usd_per_hour == 5.0


@pytest.mark.parametrize(
    ("service", "toml", "key", "suggestion"),
    [
        ("costguard", "[budget]\ndaly_usd = 5\n", "budget.daly_usd", "daily_usd"),
        ("watcher", "[watcher]\ntick_sec = 2\n", "watcher.tick_sec", "tick_s"),
        ("provisioner", "[pools.h100]\nmni = 2\n", "pools.h100.mni", "min"),
        ("scaler", "[nats]\nreplica = 3\n", "nats.replica", "replicas"),
        ("runner", "[runner]\nmax_sesions = 3\n", "runner.max_sesions", "max_sessions"),
    ],
)
def test_a_misspelt_key_names_itself_the_file_and_the_closest_key(
    tmp_path: Path, service: str, toml: str, key: str, suggestion: str
) -> None:
    cfg = tmp_path / "fleet.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_settings(settings_type(service), str(cfg), env={})
    assert str(err.value) == f"{cfg}: unknown key {key}; did you mean {suggestion}?"


def test_a_misspelt_variable_names_the_variable_and_the_right_one() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(settings_type("costguard"), env={"FLEET_BUDGET__DALY_USD": "5"})
    assert str(err.value) == (
        "environment variable FLEET_BUDGET__DALY_USD: unknown key budget.daly_usd; "
        "did you mean daily_usd (FLEET_BUDGET__DAILY_USD)?"
    )


def test_a_key_with_no_close_match_lists_the_valid_ones(tmp_path: Path) -> None:
    cfg = tmp_path / "fleet.toml"
    cfg.write_text("[lease]\nwhatever = 1\n")
    with pytest.raises(ConfigError, match=r"unknown key lease\.whatever; valid keys here: lease_s"):
        load_settings(settings_type("scaler"), str(cfg), env={})


def test_a_bad_value_names_the_pool_and_the_variable() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(settings_type("costguard"), env={"FLEET_POOLS__H100__MAX": "many"})
    assert "'pools.h100.max'" in str(err.value) and "FLEET_POOLS__H100__MAX" in str(err.value)
    with pytest.raises(ConfigError, match=r"'pools\.h100'.*min=3 and max=2"):
        load_settings(
            settings_type("provisioner"),
            env={},
            overrides={"pools": {"h100": {"min": 3, "max": 2}}},
        )


def test_a_section_no_service_reads_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "fleet.toml"
    cfg.write_text("[budgte]\ndaily_usd = 5\n")
    kinds = [settings_type(n) for n in ORDER]
    with pytest.raises(ConfigError, match=r"unknown key budgte; did you mean budget\?"):
        check_sections(kinds, str(cfg), env={})
    for kind in kinds:  # each service alone skips sections it does not read
        load_settings(kind, str(cfg), env={})


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_is_valid_for_every_service(path: Path) -> None:
    check(str(path))


def test_the_settings_registry_names_each_services_settings_type() -> None:
    for name in ORDER:
        assert load(name).settings_type is settings_type(name), name
