"""The routine check's judgement: findings from stats, health and the budget (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.events import Severity

SCALE_UP_AT = 0.85
"""Utilization above which a pool with a queue is reported as needing capacity."""


@dataclass(frozen=True)
class Finding:
    kind: str
    """stats, scaling, cleanup, health or anomaly."""
    message: str
    severity: Severity = "info"
    pool: str | None = None

    @property
    def is_anomaly(self) -> bool:
        return self.kind == "anomaly" or self.severity != "info"


def findings(
    stats: dict[str, Any], health: dict[str, Any], budget: dict[str, Any]
) -> list[Finding]:
    """What an operator should know now; anomalies are warning or critical."""
    out: list[Finding] = []
    if "error" in stats:
        out.append(
            Finding("anomaly", f"stats unavailable: {stats['error'].get('message')}", "warning")
        )
        pools: dict[str, Any] = {}
    else:
        pools = stats.get("pools", {})
        out.append(
            Finding(
                "stats",
                f"{len(pools)} pools; "
                + "; ".join(
                    f"{p}: {v['ready']} ready, {v['utilization']:.0%}"
                    for p, v in sorted(pools.items())
                ),
            )
        )
    for pool, p in sorted(pools.items()):
        if p["utilization"] >= SCALE_UP_AT and p["queue"] > 0:
            out.append(
                Finding(
                    "scaling",
                    f"{pool} is {p['utilization']:.0%} utilized with {p['queue']:g} queued; "
                    "the scaler should be adding capacity",
                    "info",
                    pool,
                )
            )
        if p["ready"] == 0 and p["pending"] == 0 and (p["queue"] > 0 or p["inflight"] > 0):
            out.append(
                Finding(
                    "anomaly",
                    f"{pool} has work waiting and no units ready or coming",
                    "critical",
                    pool,
                )
            )
    if "error" in health:
        out.append(
            Finding("anomaly", f"health unavailable: {health['error'].get('message')}", "warning")
        )
    elif not health.get("ok", True):
        out.append(Finding("health", "; ".join(health.get("problems", [])), "warning"))
    else:
        out.append(Finding("health", "every expected service answers"))
    if "error" not in budget and budget.get("daily_usd"):
        projected = float(budget.get("projected_today_usd", 0.0))
        daily = float(budget["daily_usd"])
        if projected > daily:
            out.append(
                Finding(
                    "anomaly",
                    f"spend is projected at ${projected:.2f} today, over the ${daily:.2f} budget",
                    "critical",
                )
            )
        elif projected > 0.8 * daily:
            out.append(
                Finding(
                    "anomaly",
                    f"spend is projected at ${projected:.2f}, {projected / daily:.0%} of budget",
                    "warning",
                )
            )
    return out
