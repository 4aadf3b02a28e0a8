"""`fleet.api.fleet_report` on the gateway: read the streams, ask the cost-guard for its
own figure of today, build the report."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from nats.js import JetStreamContext

from contracts.api.report import FleetReport, FleetReportQuery
from services.gateway.history.advice import PoolFacts
from services.gateway.history.build import build
from services.gateway.history.reader import read_history
from services.kit.pools import PoolConfig

Ask = Callable[[str], Awaitable[dict[str, Any]]]
"""Another service's fleet.api answer by operation name, {"error": ...} when absent."""


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
    budget = await ask("budget")
    if "error" in budget:
        history.notes.append("the cost-guard did not answer; ledger_today_usd is missing")
    else:
        history.ledger_today_usd = float(budget.get("spent_today_usd", 0.0))
    return build(history, facts_of(pools), since, until, q.pool)
