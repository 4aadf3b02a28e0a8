"""A pool's configured policy, read from fleet.toml for `fleet replay --config`.

Read exactly as the scaler reads it: the table is a `PoolConfig` (every
service's keys, unknown keys refused), and the scaler's `Policy` is its view.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec

from services.kit.pools import PoolConfig
from services.scaler.policy import Policy
from services.scaler.settings import policy_of


class ConfigError(ValueError):
    """A config file or pool that cannot give a policy; the message names the key."""


def pool_policy(path: Path, pool: str) -> Policy:
    """The policy `pool` runs with under the config at `path`."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not TOML ({exc})") from None
    pools = doc.get("pools", {})
    if not isinstance(pools, dict) or pool not in pools:
        known = ", ".join(sorted(pools)) if isinstance(pools, dict) else ""
        raise ConfigError(f"{path}: no [pools.{pool}] table (pools: {known or 'none'})")
    try:
        return policy_of(msgspec.convert(pools[pool], PoolConfig))
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: [pools.{pool}]: {exc}") from None
