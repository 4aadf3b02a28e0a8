"""Pure assembly of the gateway's composite answers from the other services' answers.

Inputs are the JSON the owners serve (`fleet.api.pools`, `units.list`,
`budget`, `$SRV.PING`, consumer info); nothing here does I/O.
"""

from __future__ import annotations

from typing import Any

BILLED = ("booting", "ready", "draining")
PENDING = ("requested", "booting")


def pool_stats(pools: dict[str, Any], units: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per pool: ready, pending, utilization, in-flight, queue and USD/hour."""
    out: dict[str, dict[str, Any]] = {}
    for entry in pools.get("pools", []):
        m = entry.get("metrics", {})
        pool = m.get("pool")
        if not pool:
            continue
        out[pool] = {
            "ready": int(m.get("units_ready", 0)),
            "pending": int(m.get("units_pending", 0)),
            "utilization": round(float(m.get("utilization", 0.0)), 4),
            "inflight": float(m.get("inflight", 0.0)),
            "queue": float(m.get("queue_depth", 0.0)),
            "arrival_rate": float(m.get("arrival_rate", 0.0)),
            "usd_per_hour": 0.0,
        }
    for u in units.get("units", []):
        pool = u.get("pool")
        if not pool:
            continue
        row = out.setdefault(
            pool,
            {
                "ready": 0,
                "pending": 0,
                "utilization": 0.0,
                "inflight": 0.0,
                "queue": 0.0,
                "arrival_rate": 0.0,
                "usd_per_hour": 0.0,
                "metrics": "none yet",
            },
        )
        state = u.get("state")
        if "metrics" in row:
            row["ready"] += state == "ready"
            row["pending"] += state in PENDING
        if state in BILLED:
            row["usd_per_hour"] = round(row["usd_per_hour"] + float(u.get("usd_per_hour", 0)), 4)
    return out


def budget_brief(budget: dict[str, Any]) -> dict[str, Any]:
    """Today's spend and budget from the cost-guard's answer (what stats shows)."""
    keys = (
        "spent_today_usd",
        "daily_usd",
        "hard_cap_usd",
        "burn_usd_per_hour",
        "reserved_usd_per_hour",
        "projected_today_usd",
    )
    return {k: budget[k] for k in keys if k in budget}


def idle_units(
    units: dict[str, Any], idle_after_s: float, pool: str | None, now: float
) -> list[dict[str, Any]]:
    """Ready units idle for at least `idle_after_s`, idlest first; explicit capacity
    (a pinned unit whose pin has not ended) is idle by design and never listed."""
    found = [
        u
        for u in units.get("units", [])
        if u.get("state") == "ready"
        and float(u.get("idle_s", 0.0)) >= idle_after_s
        and (pool is None or u.get("pool") == pool)
        and not u.get("release_requested_ts")
        and not _pinned(u, now)
    ]
    return sorted(found, key=lambda u: -float(u.get("idle_s", 0.0)))


def _pinned(unit: dict[str, Any], now: float) -> bool:
    until = unit.get("pinned_until")
    return bool(unit.get("pinned")) and (until is None or now < float(until))


def health_summary(
    pings: list[dict[str, Any]],
    expected: list[str],
    statuses: dict[str, dict[str, Any]],
    consumers: list[dict[str, Any]],
    lag_warn: int,
) -> dict[str, Any]:
    """Services answering, open breakers, consumer lag and what is wrong, as one answer."""
    answering = sorted({p.get("name", "") for p in pings} - {"", "fleet-api"})
    missing = [s for s in expected if s not in answering]
    breakers: dict[str, Any] = {}
    for name, st in statuses.items():
        for key, value in (st.get("breakers") or {}).items():
            breakers[key] = value
        counts = st.get("counts") or {}
        if counts.get("breaker_opened", 0) > counts.get("breaker_closed", 0) and not breakers:
            breakers[name] = "a breaker opened and has not closed"
    lagging = [c for c in consumers if int(c.get("pending", 0)) >= lag_warn]
    problems = [f"{s} is not answering" for s in missing]
    problems += [f"breaker {k}: {v}" for k, v in breakers.items() if v not in ("closed", "ok")]
    problems += [
        f"consumer {c['stream']}/{c['consumer']} is {c['pending']} messages behind" for c in lagging
    ]
    return {
        "ok": not problems,
        "services": answering,
        "missing": missing,
        "breakers": breakers,
        "stream_lag": consumers,
        "problems": problems,
    }


def report_text(stats: dict[str, Any], health: dict[str, Any]) -> str:
    """A few lines an operator reads at a glance."""
    lines = []
    b = stats.get("budget", {})
    if b:
        lines.append(
            f"spend today ${b.get('spent_today_usd', 0):.2f} of ${b.get('daily_usd', 0):.2f}; "
            f"burn ${b.get('burn_usd_per_hour', 0):.2f}/h"
        )
    for pool, p in sorted(stats.get("pools", {}).items()):
        lines.append(
            f"{pool}: {p['ready']} ready, {p['pending']} pending, "
            f"{p['utilization']:.0%} utilized, queue {p['queue']:g}, ${p['usd_per_hour']:.2f}/h"
        )
    lines.append("health: ok" if health.get("ok") else "health: " + "; ".join(health["problems"]))
    return "\n".join(lines)
