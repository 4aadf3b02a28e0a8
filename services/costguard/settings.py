"""The cost-guard's settings: `[budget]`, and `[pools.<pool>]` as the kit's `PoolConfig`
(it reads `gpu_model`, `providers`, `max_usd_per_hour` and `max`)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from services.kit.config import KitSettings
from services.kit.pools import PoolConfig

Usd = Annotated[float, Meta(ge=0.0, le=1e9)]
Positive = Annotated[float, Meta(gt=0.0, le=1e9)]


class BudgetSettings(msgspec.Struct, frozen=True, kw_only=True):
    """`[budget]`: how much the fleet may spend and who must say yes."""

    daily_usd: Usd = 100.0
    """Spend allowed per UTC day, USD; automatic approvals keep the day's projection under it."""
    hard_cap_usd: Usd | None = None
    """USD per UTC day that nothing exceeds, not even an operator's approval; default daily_usd."""
    max_burn_usd_per_hour: Usd | None = None
    """Most USD/hour the fleet may be committed to at once (billing units, reserved
    units and the new command together); None for no limit. Unlike the daily
    projection, which loosens as the UTC day runs out, this binds at any hour."""
    approval_threshold_usd_per_hour: Usd = 10.0
    """A command adding more than this, USD/hour, waits for a person (`fleet approve ID`)."""
    hold_timeout_s: Positive = 900.0
    """Seconds a held command waits for a person before it is denied."""
    rate_limit_per_min: Positive = 60.0
    """Commands one requester may send per minute (token bucket; bursts up to this many)."""
    reservation_timeout_s: Positive = 900.0
    """Seconds an approved unit stays reserved while it has not started billing; a
    provider that takes longer than this to boot is counted from its first billed event."""
    offers_timeout_s: Positive = 1.0
    """How long to wait for the provisioner's offers, seconds; after it the pool's
    `max_usd_per_hour` is the price estimate."""
    held_sweep_s: Positive = 1.0
    """Seconds between sweeps that deny timed-out held commands and drop stale reservations."""
    adhoc_max_usd_per_hour: Usd = 50.0
    """Price ceiling of one unit in an ad-hoc pool (`adhoc-<model>`, made by a provision of
    a model no pool runs), USD/hour. Such units are priced at the cheapest live offer; this
    is the estimate when no offer answers, high enough to be judged with caution."""

    unsigned_end_check_s: Positive = 5.0
    """Seconds after refusing an unsigned end (terminated, failed) of a unit the ledger
    bills before asking the provisioner about it: long enough for the provisioner's own
    signed event to arrive when the end is real (the watcher's failure reports are
    unsigned), so only an end nobody confirms raises a critical alert."""
    agent_max_usd_per_hour: Usd = 2.0
    """Price ceiling of one hosted agent's own runner (pool `agents-<name>`, asked for by
    the gateway when `[gateway] agent_runtime` is set), USD/hour: a microVM of a few
    vCPUs at a few cents a core-hour, with room; a bigger one is denied."""

    @property
    def cap_usd(self) -> float:
        """The hard cap in force (daily_usd when none is set)."""
        return self.daily_usd if self.hard_cap_usd is None else self.hard_cap_usd

    @property
    def auto_limit_usd(self) -> float:
        """What the day may reach without a person deciding."""
        return min(self.daily_usd, self.cap_usd)


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    """Everything `judge()` needs from the configuration."""

    budget: BudgetSettings = msgspec.field(default_factory=BudgetSettings)
    pools: dict[str, PoolConfig] = msgspec.field(default_factory=dict)


def with_adhoc(policy: Policy, pool: str) -> Policy:
    """`policy` with ad-hoc pool `pool` in it: any model, any provider a configured pool
    uses (the default `sim` when none is configured), the ad-hoc price ceiling. Pure; the
    same name always gives the same view, so nothing about it needs storing."""
    if pool in policy.pools:
        return policy
    providers = list(dict.fromkeys(p for v in policy.pools.values() for p in v.providers))
    view = PoolConfig(
        gpu_model="any",
        providers=providers or ["sim"],
        max_usd_per_hour=policy.budget.adhoc_max_usd_per_hour,
    )
    return msgspec.structs.replace(policy, pools={**policy.pools, pool: view})


def with_agent_pool(policy: Policy, pool: str, provider: str | None) -> Policy:
    """`policy` with the view of hosted agent pool `pool`, which is not configured: CPU
    runner units from the provider a provision names (the gateway's `agent_runtime`;
    for a release, the provider seen before, else `local`), at most
    `agent_max_usd_per_hour` each, no minimum. Pure; the caller keeps configured pools
    out of it."""
    seen = policy.pools.get(pool)
    view = PoolConfig(
        gpu_model="CPU",
        providers=[provider] if provider else (seen.providers if seen else ["local"]),
        max_usd_per_hour=policy.budget.agent_max_usd_per_hour,
        min=0,
    )
    return msgspec.structs.replace(policy, pools={**policy.pools, pool: view})


class CostguardSettings(KitSettings, kw_only=True):
    """Settings of `fleet run costguard`."""

    budget: BudgetSettings = msgspec.field(default_factory=BudgetSettings)
    pools: dict[str, PoolConfig] = msgspec.field(default_factory=dict)

    def policy(self) -> Policy:
        """The pure judge's view of these settings."""
        return Policy(budget=self.budget, pools=dict(self.pools))
