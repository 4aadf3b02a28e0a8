"""`fleet status`: services, streams, pools and budget at a glance."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rich.console import Console
from rich.table import Table

from contracts.subjects import agent_of_pool, is_adhoc
from services.kit.bus import gather_replies
from services.kit.config import resolve_nats_url
from tools.natsops import ask_json, cli_connect
from tools.termout import stdout_console


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "status",
        help="services, streams, pools and budget at a glance",
        description="Show the services answering $SRV.PING with their versions and counts, the "
        "JetStream streams with message counts, each pool's ready/pending/desired units, "
        "today's spend against the budget, and held requests.",
        epilog="examples:\n  fleet status\n  fleet status --json | jq .services",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--nats", help="NATS URL (default: FLEET_NATS_URL, then .fleet/nats.url)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _without_userinfo(url: str) -> str:
    """The server's URL as status shows it: any user:password in it left out."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host))


async def collect(url: str | None) -> dict[str, Any]:
    """Everything `fleet status` shows, as one JSON-able document."""
    nc = await cli_connect(url)
    try:
        stats, streams, pools, scaling, budget, health = await asyncio.gather(
            gather_replies(nc, "$SRV.STATS", wait_s=0.7),
            _streams(nc),
            ask_json(nc, "fleet.api.pools", {}),
            ask_json(nc, "fleet.api.scaling", {}),
            ask_json(nc, "fleet.api.budget", {}),
            ask_json(nc, "fleet.api.health", {}, timeout_s=3.0),
        )
    finally:
        await nc.close()
    services: list[dict[str, Any]] = []
    api: list[dict[str, Any]] = []
    for s in sorted(stats, key=lambda x: (x.get("name", ""), x.get("id", ""))):
        if s.get("name") == "fleet-api":
            api.extend(
                {"op": e.get("subject"), "served_by": (s.get("metadata") or {}).get("served_by")}
                for e in s.get("endpoints") or []
            )
            continue
        data: dict[str, Any] = (
            next((e.get("data") for e in s.get("endpoints") or [] if e.get("data")), {}) or {}
        )
        services.append(
            {
                "name": s.get("name"),
                "version": s.get("version"),
                "id": s.get("id"),
                "state": data.get("state", "?"),
                "uptime_s": data.get("uptime_s"),
                "counts": data.get("counts", {}),
                "requests": sum(e.get("num_requests", 0) for e in s.get("endpoints") or []),
                "errors": sum(e.get("num_errors", 0) for e in s.get("endpoints") or []),
            }
        )
    return {
        "nats": _without_userinfo(resolve_nats_url(url)),
        "services": services,
        "api": sorted(api, key=lambda a: str(a["op"])),
        "streams": streams,
        "pools": pools,
        "scaling": scaling,
        "budget": budget,
        "health": health,
    }


async def _streams(nc: Any) -> list[dict[str, Any]]:
    try:
        infos = await nc.jetstream().streams_info()
    except Exception:
        return []
    return [
        {
            "name": i.config.name,
            "subjects": list(i.config.subjects or []),
            "messages": i.state.messages,
            "bytes": i.state.bytes,
            "consumers": i.state.consumer_count,
        }
        for i in infos
    ]


def run(args: argparse.Namespace) -> int:
    doc = asyncio.run(collect(args.nats))
    if args.json:
        json.dump(doc, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0 if doc["services"] else 1
    render(doc, stdout_console())
    return 0 if doc["services"] else 1


def _counts(counts: dict[str, int]) -> str:
    keep = {k: v for k, v in counts.items() if v and not k.endswith(".ok")}
    return " ".join(f"{k}={v}" for k, v in sorted(keep.items())[:6])


def pool_rows(answer: Any) -> list[dict[str, Any]]:
    """The PoolMetrics in the watcher's `fleet.api.pools` answer, by pool name."""
    if not isinstance(answer, dict) or not isinstance(answer.get("pools"), list):
        return []
    rows = [p.get("metrics", {}) for p in answer["pools"] if isinstance(p, dict)]
    return sorted((r for r in rows if isinstance(r, dict)), key=lambda r: str(r.get("pool")))


def left_behind(metrics: dict[str, Any], want: dict[str, Any]) -> bool:
    """A pool of a deleted hosted agent or a released ad-hoc provision: nothing ready,
    coming, wanted or asked of it. The watcher keeps its ended units for an hour
    (`forget_after_s`); the table leaves it out meanwhile (`--json` keeps it)."""
    pool = str(metrics.get("pool", ""))
    if not (agent_of_pool(pool) or is_adhoc(pool)):
        return False
    counts = ("units_ready", "units_pending", "inflight", "queue_depth")
    return not any(metrics.get(k) for k in counts) and not want.get("desired")


def render(doc: dict[str, Any], console: Console) -> None:
    services = Table(title="services", title_justify="left")
    for col in ("service", "version", "state", "up", "counts"):
        services.add_column(col)
    for s in doc["services"]:
        up = f"{s['uptime_s']:.0f} s" if isinstance(s.get("uptime_s"), int | float) else "?"
        style = "green" if s["state"] == "ready" else "yellow"
        services.add_row(
            s["name"], s["version"], f"[{style}]{s['state']}[/]", up, _counts(s["counts"])
        )
    if not doc["services"]:
        console.print("[red]no service answers $SRV.PING: is `fleet up` running?[/]")
    else:
        console.print(services)
    streams = Table(title="streams", title_justify="left")
    for col in ("stream", "messages", "bytes", "consumers"):
        streams.add_column(col)
    for st in doc["streams"]:
        streams.add_row(st["name"], str(st["messages"]), str(st["bytes"]), str(st["consumers"]))
    console.print(streams)
    rows = pool_rows(doc.get("pools"))
    scaling = doc.get("scaling") or {}
    wants = scaling.get("pools", {}) if isinstance(scaling, dict) else {}
    if not isinstance(wants, dict):
        wants = {}
    idle = [m for m in rows if left_behind(m, wants.get(m.get("pool"), {}) or {})]
    rows = [m for m in rows if m not in idle]
    if rows:
        table = Table(title="pools", title_justify="left")
        names = [str(m.get("pool", "?")) for m in rows]
        table.add_column("pool", no_wrap=True, min_width=max(map(len, names)))  # never cut
        cols = ("ready", "pending", "desired", "in flight", "queue", "utilization")
        for col in (*cols, "arrivals"):
            table.add_column(col)
        for m in rows:
            want = wants.get(m.get("pool"), {})
            desired = want.get("desired")
            table.add_row(
                str(m.get("pool", "?")),
                str(m.get("units_ready", "?")),
                str(m.get("units_pending", "?")),
                ("?" if desired is None else str(desired))
                + (f" ({want['pinned']} pinned)" if want.get("pinned") else "")
                + (" (panic)" if want.get("panic") else ""),
                f"{m.get('inflight', 0):.0f}",
                f"{m.get('queue_depth', 0):.0f}",
                f"{m.get('utilization', 0):.0%}",
                f"{m.get('arrival_rate', 0):.1f}/s",
            )
        console.print(table)
    if idle:
        hidden = ", ".join(str(m.get("pool")) for m in idle)
        console.print(f"[dim]empty agent and ad-hoc pools not shown: {hidden}[/]")
    budget = doc.get("budget")
    if isinstance(budget, dict) and "error" not in budget:
        spent = budget.get("spent_today_usd", 0.0)
        total = budget.get("daily_usd", budget.get("budget_usd", 0.0))
        burn = budget.get("burn_usd_per_hour", 0.0)
        cap = budget.get("max_burn_usd_per_hour")
        console.print(
            f"[bold]budget[/]: spent ${spent:,.2f} of ${total:,.2f} today "
            f"(hard cap ${budget.get('hard_cap_usd', total):,.2f}); burning ${burn:,.2f}/h"
            + (f" of at most ${cap:,.2f}/h" if cap else "")
            + f", ${budget.get('reserved_usd_per_hour', 0.0):,.2f}/h reserved; "
            f"projected ${budget.get('projected_today_usd', 0.0):,.2f} by midnight UTC"
        )
        for h in budget.get("held") or []:
            console.print(
                f"  [yellow]held[/] {h.get('id')}: {h.get('units')} unit(s) of {h.get('pool')} "
                f"for ${h.get('usd_per_hour', 0):,.2f}/h from {h.get('requester')}, "
                f"denied in {h.get('expires_in_s', 0):.0f} s unless "
                f"`fleet approve {h.get('id')}` (or `fleet reject {h.get('id')}`)"
            )
    console.print(health_line(doc.get("health")))


def health_line(health: Any) -> str:
    """`fleet.api.health` in one line: ok, its problems, or why it did not answer."""
    if not isinstance(health, dict):
        return "[bold]health[/]: [yellow]no answer from fleet.api.health (is the gateway up?)[/]"
    if isinstance(health.get("error"), dict):
        return f"[bold]health[/]: [red]{health['error'].get('message', 'error')}[/]"
    if health.get("ok"):
        return f"[bold]health[/]: [green]ok[/] ({', '.join(health.get('services') or [])})"
    return "[bold]health[/]: [red]" + "; ".join(health.get("problems") or ["not ok"]) + "[/]"
