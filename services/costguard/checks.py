"""Input checks: what makes a command impossible to judge, said plainly.

The wire types already refuse what cannot be a command at all (a negative
count, a NaN price, a missing id): those never decode and are dead-lettered.
These checks catch what decodes but makes no sense here (an unknown pool or
provider, more units than the pool may hold), and repeat the type's limits
for commands built in-process, which msgspec does not validate.
"""

from __future__ import annotations

import math

from contracts.commands import (
    MAX_COUNT,
    AnyCommand,
    ProvisionRequest,
    ReleaseRequest,
    ScaleProposal,
)
from contracts.subjects import agent_of_pool, is_adhoc
from services.costguard.settings import Policy

MAX_PRICE_USD_PER_HOUR = 1e7


def problem(request: AnyCommand, policy: Policy) -> str | None:
    """Why `request` cannot be judged, or None when it can."""
    if not isinstance(request.id, str) or not request.id.strip():
        return "the request has no id; send one so its verdict can be matched and de-duplicated"
    pool = policy.pools.get(request.pool)
    if pool is None:
        # The views the cost-guard made for hosted agents' and ad-hoc pools it has seen
        # (a deleted agent's among them) are not what an operator configured.
        configured = (p for p in policy.pools if not agent_of_pool(p) and not is_adhoc(p))
        known = ", ".join(sorted(configured)) or "none"
        return f"unknown pool {request.pool!r}; configured pools: {known}"
    limit = min(MAX_COUNT, pool.max)
    match request:
        case ProvisionRequest():
            if not _int_in(request.count, 1, limit):
                return f"count {request.count!r} must be a whole number from 1 to {limit}"
            if request.provider is not None and request.provider not in pool.providers:
                return (
                    f"unknown provider {request.provider!r} for pool {request.pool!r}; "
                    f"it uses {', '.join(pool.providers)}"
                )
            price = request.max_usd_per_hour
            if price is not None and not _price_ok(price):
                return f"max_usd_per_hour {price!r} must be a finite number of USD from 0"
            if request.gpu_model not in ("any", pool.gpu_model) and pool.gpu_model != "any":
                return (
                    f"pool {request.pool!r} runs {pool.gpu_model}, not {request.gpu_model!r}; "
                    "ask for that model or use another pool"
                )
        case ScaleProposal():
            pool_max = pool.max
            for name, value in (("current", request.current), ("desired", request.desired)):
                if not _int_in(value, 0, 1_000_000):
                    return f"{name} {value!r} must be a whole number from 0 to 1000000"
            if request.desired > pool_max:
                return f"desired {request.desired} is above pool {request.pool!r} max {pool_max}"
            if abs(request.desired - request.current) > MAX_COUNT:
                return f"a step of {request.desired - request.current} units exceeds {MAX_COUNT}"
        case ReleaseRequest():
            if request.unit is None and request.count is None:
                return "a release names a unit or a count; this one has neither"
            if request.count is not None and not _int_in(request.count, 1, MAX_COUNT):
                return f"count {request.count!r} must be a whole number from 1 to {MAX_COUNT}"
    return None


def _int_in(value: object, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _price_ok(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and math.isfinite(value)
        and 0 <= value <= MAX_PRICE_USD_PER_HOUR
    )
