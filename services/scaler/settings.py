"""The scaler's settings: `[scaler]` and each pool's policy, taken from `[pools.<pool>]`.

The pool tables are the kit's `PoolConfig`, the same type every service reads;
the scaler's `Policy` is built from it (`policy_of`) rather than read from the
file through a schema of its own, so a pool means the same to every service.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from services.kit.config import KitSettings
from services.kit.pools import PoolConfig, keys_of
from services.scaler.policy import Policy


def policy_of(pool: PoolConfig) -> Policy:
    """The scaler's view of one pool: Policy's fields, each read from the pool's table."""
    return msgspec.convert(keys_of(Policy, pool), Policy)


class ScalerOptions(msgspec.Struct, kw_only=True):
    """`[scaler]`."""

    stale_after_s: Annotated[float, Meta(gt=0)] = 5.0
    """Metrics older than this (seconds, by their `ts`) are skipped: after a restart the
    backlog describes a past that no proposal can fix. A few of the watcher's 1 s ticks."""
    default_policy: PoolConfig = msgspec.field(default_factory=PoolConfig)
    """`[scaler.default_policy]`: the pool keys for pools that have no `[pools.<pool>]`
    table (known only from their metrics). A pool's own table does not inherit from it:
    every service reads a configured pool the same way."""
    pin_check_s: Annotated[float, Meta(gt=0)] = 1.0
    """Seconds between looks for explicit capacity whose duration has ended; a pin is
    released at most this late."""


class ScalerSettings(KitSettings, kw_only=True):
    """Settings of the scaler service."""

    scaler: ScalerOptions = msgspec.field(default_factory=ScalerOptions)
    pools: dict[str, PoolConfig] = msgspec.field(default_factory=dict)
    """`[pools.<pool>]`: the policy keys are read here; see services/kit/pools.py."""


def policies(s: ScalerSettings) -> tuple[Policy, dict[str, Policy]]:
    """The default policy and each configured pool's, from the settings."""
    return policy_of(s.scaler.default_policy), {p: policy_of(c) for p, c in s.pools.items()}
