"""`fleet loadgen`: open-loop A2A load against a hosted agent, then latency and errors."""

from __future__ import annotations

import argparse
import asyncio
import sys

import msgspec
from rich.console import Console

from services.kit.config import resolve_nats_url
from tools.loadgen.engine import LoadRun, Plan, connect
from tools.loadgen.report import LiveProgress, table
from tools.loadgen.stats import summarize


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "loadgen",
        help="A2A load against hosted agents",
        description="Simulate many users, each with a session, sending A2A messages to "
        "agents.<NAME> at Poisson arrivals of RATE per second (open loop) for DURATION "
        "seconds; then print concurrent users, requests/s, p50/p95/p99 latency, success "
        "rate and errors by kind.",
        epilog="examples:\n  fleet loadgen --agent assistant --users 1000 --rate 100 "
        "--duration 60\n  fleet loadgen --agent assistant --users 200 --rate 20 --duration "
        "30 --stream --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--agent", default="assistant", help="hosted agent name (default: assistant)")
    p.add_argument("--users", type=int, default=100, help="simulated users, one session each")
    p.add_argument("--rate", type=float, default=10.0, help="mean arrivals per second")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of arrivals")
    p.add_argument(
        "--tenants", type=int, default=0, help="tenants the users belong to (default users/20)"
    )
    p.add_argument("--stream", action="store_true", help="SendStreamingMessage instead")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer")
    p.add_argument("--seed", type=int, default=None, help="random seed for repeatable arrivals")
    p.add_argument("--json", action="store_true", help="print the summary as JSON only")
    p.add_argument("--nats", help="NATS URL (default: FLEET_NATS_URL, then .fleet/nats.url)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in ("users", "rate", "duration", "timeout"):
        if getattr(args, name) <= 0:
            print(f"fleet loadgen: --{name} must be positive", file=sys.stderr)
            return 2
    if args.tenants < 0:
        print("fleet loadgen: --tenants must be 0 (automatic) or positive", file=sys.stderr)
        return 2
    plan = Plan(
        agent=args.agent,
        users=args.users,
        rate=args.rate,
        duration_s=args.duration,
        stream=args.stream,
        tenants=args.tenants,
        timeout_s=args.timeout,
        seed=args.seed,
    )
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    try:
        return asyncio.run(_run(plan, resolve_nats_url(args.nats), args.json))
    except KeyboardInterrupt:
        return 130


async def _run(plan: Plan, url: str, as_json: bool) -> int:
    try:
        nc = await connect(url)
    except Exception as exc:
        print(f"fleet loadgen: cannot reach NATS at {url}: {exc}", file=sys.stderr)
        return 1
    console = Console(stderr=True, highlight=False)
    try:
        load = LoadRun(nc, plan)
        if as_json:
            window = await load.run()
        else:
            with LiveProgress(console, plan.duration_s) as bar:
                window = await load.run(bar.update)
    finally:
        await nc.close()
    summary = summarize(
        load.tally,
        agent=plan.agent,
        users=plan.users,
        tenants=plan.tenant_count(),
        rate=plan.rate,
        duration_s=window,
        stream=plan.stream,
    )
    if as_json:
        print(msgspec.json.encode(summary).decode())
    else:
        Console(highlight=False).print(table(summary))
    if summary.sent and summary.errors.get("no_responders") == summary.sent:
        print(
            f"fleet loadgen: nobody serves agents.{plan.agent}; start a runner "
            "(`fleet run runner`, or `fleet up --demo agents`)",
            file=sys.stderr,
        )
        return 1
    return 0
