"""A pool's configured policy and price, read from fleet.toml for `fleet replay --config`.

Read exactly as the scaler reads it: `load_settings` of the scaler's settings,
so the file, then `FLEET_*` variables laid over it (`FLEET_POOLS__GPU__MAX=8`),
every table checked (an unknown key names the closest valid one). A pool with
a `[pools.<pool>]` table runs that table over the defaults and does not inherit
`[scaler.default_policy]`, which the scaler gives only pools without a table:
replay does the same, and says so when the default stands in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

from services.kit.config import load_settings
from services.kit.errors import ConfigError as SettingsError
from services.kit.pools import PoolConfig
from services.scaler.policy import Policy
from services.scaler.settings import ScalerSettings, policy_of


class ConfigError(ValueError):
    """A config file or pool that cannot give a policy; the message names the key."""


@dataclass(frozen=True)
class PoolSetup:
    """What replaying a configured pool takes from the config."""

    policy: Policy
    usd_per_hour: float
    """The pool's `max_usd_per_hour`: the price the cost-guard assumes for a unit."""
    note: str | None = None
    """Said when `[scaler.default_policy]` stands in for a pool without a table."""


def pool_setup(path: Path, pool: str, env: Mapping[str, str] | None = None) -> PoolSetup:
    """The policy and unit price `pool` runs with under the config at `path` and the
    environment (`os.environ` by default)."""
    try:
        settings = load_settings(ScalerSettings, str(path), env)
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None
    conf, note, table = settings.pools.get(pool), None, f"[pools.{pool}]"
    if conf is None:
        known = ", ".join(sorted(settings.pools)) or "none"
        conf, table = settings.scaler.default_policy, "[scaler.default_policy]"
        if conf == PoolConfig():
            raise ConfigError(
                f"{path}: no [pools.{pool}] table (pools: {known}), and no "
                "[scaler.default_policy] for the scaler to run it on"
            )
        note = (
            f"{path}: no [pools.{pool}] table (pools: {known}): replaying "
            "[scaler.default_policy], as the scaler runs a pool it knows only from metrics"
        )
    try:
        policy = policy_of(conf)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {table}: {exc}") from None
    return PoolSetup(policy=policy, usd_per_hour=conf.max_usd_per_hour, note=note)


def pool_policy(path: Path, pool: str) -> Policy:
    """The policy `pool` runs with under the config at `path` (see `pool_setup`)."""
    return pool_setup(path, pool).policy
