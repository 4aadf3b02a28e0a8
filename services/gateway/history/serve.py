"""`fleet.api.fleet_report` on the gateway: read the streams, ask the cost-guard for its
own figure of today, build the report."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from nats.js import JetStreamContext

from contracts.api.report import FleetReport, FleetReportQuery
from services.gateway.history.advice import PoolFacts
from services.gateway.history.build import History, build
from services.gateway.history.reader import read_history
from services.kit.pools import PoolConfig
from services.kit.service import RequestError

Ask = Callable[[str], Awaitable[dict[str, Any]]]
"""Another service's fleet.api answer by operation name, {"error": ...} when absent."""


def kept_anything(history: History, pool: str) -> bool:
    """Whether the streams kept anything of `pool`: a pool no longer configured may
    still have a history; a mistyped name has none."""
    return (
        bool(history.rollup)  # read for this pool only
        or any(u.pool == pool for u in history.units)
        or any(v.request.pool == pool for v in history.verdicts)
        or any(j.pool == pool for j in history.jobs)
    )


def facts_of(pools: Mapping[str, PoolConfig]) -> dict[str, PoolFacts]:
    """The pool settings the recommendations weigh, per configured pool (a pool without
    a table gets PoolFacts' defaults, which are PoolConfig's)."""
    return {
        name: PoolFacts(
            min_units=cfg.min,
            idle_cleanup_s=cfg.idle_cleanup_s,
            lead_time_s=cfg.lead_time_s,
            slo_weight=cfg.slo_weight,
        )
        for name, cfg in pools.items()
    }


async def history_report(
    js: JetStreamContext, ask: Ask, pools: Mapping[str, PoolConfig], q: FleetReportQuery
) -> FleetReport:
    """The report of the last `q.days` days, as of now."""
    until = time.time()
    since = until - q.days * 86_400.0
    history = await read_history(js, since, q.pool)
    if q.pool is not None and q.pool not in pools and not kept_anything(history, q.pool):
        raise RequestError(
            f"no pool {q.pool!r} in the configuration or in the last {q.days:g} days; "
            f"configured pools: {', '.join(sorted(pools)) or 'none'}",
            404,
        )
    budget = await ask("budget")
    if "error" in budget:
        history.notes.append("the cost-guard did not answer; ledger_today_usd is missing")
    else:
        history.ledger_today_usd = float(budget.get("spent_today_usd", 0.0))
    return build(history, facts_of(pools), since, until, q.pool)
