"""`fleet report --days N`: what the fleet did and cost, and what to change.

The report comes from `fleet.api.fleet_report` (the gateway reads the streams);
this verb adds the policy changes found by replaying each pool's recorded load
under the scaler's own decide() at other settings (`--replay-days`, 0 to skip),
then prints rich tables, `--json`, or writes one self-contained HTML file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from contracts import subjects
from contracts.api.report import MAX_REPORT_DAYS, FleetReport, Recommendation
from contracts.streams import FLEET_ROLLUP
from contracts.telemetry import PoolMinute
from services.kit.history import HistoryError, read_since
from services.scaler.policy import Policy
from tools.natsops import cli_connect
from tools.report import html, tables
from tools.termout import stdout_console

REPORT_TIMEOUT_S = 120.0
"""The gateway reads days of streams; a large fleet's week takes a while."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="what the fleet did and cost over the last days, and what to change",
        description="Load by hour of day and day of week, spend by GPU type, provider and "
        "pool, idle unit-hours, job duration and cost per GPU type and model, budget "
        "denials and holds, failures and replacements, and recommendations with their "
        "numbers and expected savings (including policy changes found by replaying the "
        "recorded load under the scaler's own decide()).",
        epilog="examples:\n  fleet report --days 7\n  fleet report --days 7 --json | jq "
        ".spend.total_usd\n  fleet report --days 7 --html week.html\n"
        "  fleet report --days 1 --pool h100 --config fleet.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--days", type=float, default=7.0, help="how far back (default 7)")
    p.add_argument("--pool", default=None, help="one pool only")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--html", metavar="FILE", help="write one self-contained HTML file")
    p.add_argument(
        "--replay-days",
        type=float,
        default=1.0,
        help="replay this many of the last days per pool under alternative policies "
        "(default 1; 0 skips the replay)",
    )
    p.add_argument("--config", type=Path, default=None, help="fleet.toml with the pools' policies")
    p.add_argument("--nats", help="NATS URL (default: FLEET_NATS_URL, then .fleet/nats.url)")
    p.set_defaults(func=run)


def _problem(args: argparse.Namespace) -> str | None:
    if not 0 < args.days <= MAX_REPORT_DAYS:
        return f"--days {args.days:g}: give a number of days in (0, {MAX_REPORT_DAYS:g}]"
    if args.replay_days < 0 or args.replay_days > args.days:
        return f"--replay-days {args.replay_days:g}: give 0 to {args.days:g} (at most --days)"
    if args.config is not None and not args.config.is_file():
        return f"--config {args.config}: no such file"
    return None


def _policy(config: Path | None, pool: str) -> Policy:
    """The pool's configured policy, or the defaults without a config naming it."""
    if config is None:
        return Policy()
    from tools.replay.poolconfig import ConfigError, pool_policy

    try:
        return pool_policy(config, pool)
    except ConfigError:
        return Policy()


async def _replays(
    nc: Any, report: dict[str, Any], days: float, config: Path | None
) -> list[Recommendation]:
    """Policy recommendations from replaying each pool's last `days` of rollup."""
    from tools.report.whatif import policy_advice, replay, rollup_trace

    since = time.time() - days * 86_400.0
    try:
        minutes, _ = await read_since(
            nc.jetstream(), FLEET_ROLLUP.name, subjects.ROLLUP_ALL, since, PoolMinute
        )
    except HistoryError as exc:
        report["notes"].append(f"no replay: {exc}")
        return []
    prices = {i["pool"]: i["usd_per_unit_hour"] for i in report["idle"]}
    out = []
    for pool in report["pools"]:
        trace = rollup_trace([m for m in minutes if m.ts >= since], pool)
        if trace is None or trace.busy is None or prices.get(pool, 0.0) <= 0:
            continue
        outcomes = await asyncio.to_thread(replay, trace, _policy(config, pool), prices[pool])
        rec = policy_advice(pool, outcomes, len(trace.busy) / 3600.0)
        if rec is not None:
            out.append(rec)
    return out


async def fetch(args: argparse.Namespace) -> dict[str, Any]:
    """The report as JSON-able data, with the replay's recommendations merged in."""
    nc = await cli_connect(args.nats)
    try:
        body = {"days": args.days} | ({"pool": args.pool} if args.pool else {})
        try:
            msg = await nc.request(
                subjects.api("fleet_report"), json.dumps(body).encode(), timeout=REPORT_TIMEOUT_S
            )
        except Exception as exc:
            raise SystemExit(
                f"fleet report: fleet.api.fleet_report did not answer ({type(exc).__name__}); "
                "is the gateway running (`fleet status`)?"
            ) from None
        doc: dict[str, Any] = json.loads(msg.data)
        if "error" in doc:
            raise SystemExit(f"fleet report: {doc['error'].get('message', doc['error'])}")
        if args.replay_days > 0:
            extra = await _replays(nc, doc, args.replay_days, args.config)
            report = msgspec.convert(doc, FleetReport)
            merged = sorted(
                [*report.recommendations, *extra],
                key=lambda r: (-r.saving_usd_per_week, r.kind, r.pool or ""),
            )
            doc["recommendations"] = msgspec.to_builtins(merged)
        return doc
    finally:
        await nc.close()


def run(args: argparse.Namespace) -> int:
    problem = _problem(args)
    if problem:
        print(f"fleet report: {problem}", file=sys.stderr)
        return 2
    doc = asyncio.run(fetch(args))
    if args.html:
        path = Path(args.html)
        try:
            path.write_text(html.render(doc), encoding="utf-8")
        except OSError as exc:
            print(f"fleet report: cannot write {path}: {exc}", file=sys.stderr)
            return 1
        if not args.json:
            print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    if args.json:
        print(json.dumps(doc, indent=2))
    elif not args.html:
        tables.show(doc, stdout_console())
    return 0
