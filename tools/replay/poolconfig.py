"""A pool's configured policy, read from fleet.toml for `fleet replay --config`.

The scaler reads `[scaler.default_policy]` and then lays `[pools.<pool>]` over
it; this does the same with the keys that are `Policy` fields and ignores the
rest (other services' keys live in the same tables).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import msgspec

from services.scaler.policy import Policy


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
    fields = {f.name for f in msgspec.structs.fields(Policy)}
    default = doc.get("scaler", {}).get("default_policy", {})
    data: dict[str, Any] = {}
    for where, table in (("scaler.default_policy", default), (f"pools.{pool}", pools[pool])):
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{where}] must be a table")
        data.update({k: v for k, v in table.items() if k in fields})
    try:
        policy = msgspec.convert(data, Policy)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: [pools.{pool}]: {exc}") from None
    if not 0 <= policy.min <= policy.max:
        raise ConfigError(f"{path}: [pools.{pool}]: need 0 <= min <= max")
    if policy.unit_capacity <= 0 or not 0 < policy.target_utilization <= 1:
        raise ConfigError(
            f"{path}: [pools.{pool}]: need unit_capacity > 0 and target_utilization in (0, 1]"
        )
    return policy
