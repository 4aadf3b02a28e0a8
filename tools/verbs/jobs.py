"""`fleet jobs submit|list|get|cancel|tail`: GPU work, through `fleet.api.jobs.*`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from nats.aio.client import Client
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from contracts import subjects
from contracts.jobs import TERMINAL_JOB_STATES
from tools.natsops import api_call, cli_connect
from tools.tailfmt import line
from tools.termout import stdout_console
from tools.verbs._args import at_least
from tools.verbs.tail import parse_since

NATS_HELP = "NATS URL (default: FLEET_NATS_URL, then .fleet/nats.url)"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "jobs",
        help="GPU work: submit jobs, follow them, list, get, cancel",
        description="Jobs are routed to the cheapest pool whose GPU meets their requirements "
        "within budget and carried out by that pool's units; a unit lost mid-job hands the job "
        "to another, a failing job is retried and then dead-lettered with every reason.",
        epilog="examples:\n  fleet jobs submit --vram 40 --est-s 30 --count 20 --wait\n"
        "  fleet jobs submit --pool cpu -- python -c 'print(42)'\n"
        "  fleet jobs list --state dead\n  fleet jobs get job-0a1b2c\n"
        "  fleet jobs cancel job-0a1b2c\n  fleet jobs tail",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = p.add_subparsers(dest="jobs_verb", metavar="VERB", required=True)

    s = verbs.add_parser("submit", help="submit one job, or --count copies")
    s.add_argument("--vram", type=float, metavar="GB", help="VRAM per card at least GB")
    s.add_argument("--gpu", action="append", metavar="MODEL", help="acceptable model (repeat)")
    s.add_argument("--vendor", help="nvidia, amd, ...")
    s.add_argument("--runtime", help="cuda, rocm, cpu, ...")
    s.add_argument("--pool", help="run on this pool")
    s.add_argument("--priority", choices=("high", "normal", "low"), default="normal")
    s.add_argument("--est-s", type=float, default=1.0, help="estimated seconds on an H100")
    s.add_argument("--max-usd", type=float, help="refuse pools where it would cost more")
    s.add_argument("--deadline-s", type=float, help="not worth starting after this many seconds")
    s.add_argument("--attempts", type=at_least(1), default=3, help="deliveries before dead letter")
    s.add_argument("--count", type=at_least(1), default=1, help="submit this many copies")
    s.add_argument("--wait", action="store_true", help="follow until every job ends")
    s.add_argument("--timeout-s", type=float, default=600.0, help="how long --wait waits")
    s.add_argument("command", nargs=argparse.REMAINDER, help="-- argv a local unit runs")

    ls = verbs.add_parser("list", help="the latest jobs, newest first")
    ls.add_argument("--pool")
    ls.add_argument("--state", help="queued, routed, started, succeeded, dead, ...")
    ls.add_argument("--limit", type=at_least(1), default=30)

    g = verbs.add_parser("get", help="one job with every event")
    g.add_argument("id")

    c = verbs.add_parser("cancel", help="cancel a queued or running job")
    c.add_argument("id")
    c.add_argument("--reason", default="")

    t = verbs.add_parser("tail", help="follow job events (all, or these ids)")
    t.add_argument("ids", nargs="*")
    t.add_argument("--since", type=parse_since, help="replay from this long ago first: 30s, 10m")
    t.add_argument("--count", type=int, default=0, help="exit after this many events")

    for q in (s, ls, g, c, t):
        q.add_argument("--json", action="store_true", help="machine-readable output")
        q.add_argument("--nats", help=NATS_HELP)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.jobs_verb == "tail":
        from tools.verbs.tail import follow

        ids = [subjects.job(i) for i in args.ids] or [subjects.JOB_EVENTS_ALL]
        tail = argparse.Namespace(subjects=ids, since=args.since, json=args.json,
                                  count=args.count, nats=args.nats)  # fmt: skip
        return asyncio.run(follow(tail))
    return asyncio.run(_run(args))


async def _call(nc: Client, op: str, body: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = await api_call(nc, op, body, "jobs")
    return answer


async def _run(args: argparse.Namespace) -> int:
    nc = await cli_connect(args.nats, "fleet-jobs")
    out = stdout_console(highlight=False, soft_wrap=True)
    try:
        if args.jobs_verb == "submit":
            return await _submit(nc, args, out)
        if args.jobs_verb == "list":
            body = {k: v for k, v in (("pool", args.pool), ("state", args.state)) if v}
            listed = await _call(nc, "jobs.list", {**body, "limit": args.limit})
            if args.json:
                print(json.dumps(listed))
                return 0
            # Ids are for copying into `jobs get`: never cut; the reason wraps instead.
            wide = max((len(e["job"]) for e in listed["jobs"]), default=3)
            job = Column("job", no_wrap=True, min_width=wide)
            table = Table(job, "state", "pool", "unit", "priority", "reason")
            for e in listed["jobs"]:
                table.add_row(e["job"], e["state"], e.get("pool") or "", e.get("unit") or "",
                              e.get("priority", ""), (e.get("reason") or "")[:80])  # fmt: skip
            out.print(table)
            out.print(f"{len(listed['jobs'])} of {listed['count']} job(s)")
            return 0
        if args.jobs_verb == "get":
            view = await _call(nc, "jobs.get", {"id": args.id})
            if args.json:
                print(json.dumps(view))
                return 0
            out.print(f"[bold]{view['id']}[/] {view['state'].upper()} on {view.get('pool') or '-'}")
            for e in view["events"]:
                out.print(line(subjects.job(view["id"]), json.dumps(e).encode()))
                if e.get("output"):
                    out.print(e["output"].rstrip(), style="dim", markup=False)
                for reason in e.get("reasons") or []:
                    out.print(f"    {reason}", markup=False)
            return 0 if view["state"] not in ("dead", "refused") else 1
        cancelled = await _call(nc, "jobs.cancel", {"id": args.id, "reason": args.reason})
        if args.json:
            print(json.dumps(cancelled))
        else:
            out.print(("cancelled: " if cancelled["cancelled"] else "not cancelled: ")
                      + cancelled["reason"], markup=False)  # fmt: skip
        return 0 if cancelled["cancelled"] else 1
    finally:
        await nc.close()


async def _submit(nc: Client, args: argparse.Namespace, out: Console) -> int:
    command = [c for c in args.command if c != "--"] if args.command else None
    pairs = [("min_vram_gb", args.vram), ("gpu_models", args.gpu)]
    pairs += [("vendor", args.vendor), ("runtime", args.runtime)]
    reqs = {k: v for k, v in pairs if v}
    body: dict[str, Any] = {
        "requirements": reqs,
        "priority": args.priority,
        "est_s": args.est_s,
        "attempts": args.attempts,
        "requester": "cli",
    }
    for key, value in (("pool", args.pool), ("max_usd", args.max_usd),
                       ("deadline_s", args.deadline_s), ("command", command)):  # fmt: skip
        if value:
            body[key] = value
    # Follow before submitting, so no event of a fast job is missed.
    ended: dict[str, str] = {}
    changed = asyncio.Event()

    async def on_event(msg: Any) -> None:
        event = json.loads(msg.data)
        if event.get("state") in TERMINAL_JOB_STATES:
            ended[event["job"]] = event["state"]
            changed.set()

    sub = await nc.subscribe(subjects.JOB_EVENTS_ALL, cb=on_event) if args.wait else None
    replies = await asyncio.gather(*(_call(nc, "jobs.submit", body) for _ in range(args.count)))
    accepted = [r["id"] for r in replies if r["decision"] != "refused"]
    for r in replies:
        if r["decision"] == "refused":
            ended[r["id"]] = "refused"
    if not args.json:
        for r in replies[:5]:
            where = f" {r['pool']}" if r.get("pool") else ""
            out.print(f"{r['id']} {r['decision'].upper()}{where}: {r['reason']}",
                      markup=False)  # fmt: skip
        if len(replies) > 5:
            out.print(f"... and {len(replies) - 5} more", style="dim")
    if args.wait and accepted:
        await _follow(ended, changed, [r["id"] for r in replies], args, out)
    if sub is not None:
        await sub.unsubscribe()
    if args.json:
        print(json.dumps({"jobs": replies, "outcomes": ended if args.wait else {}}))
    if any(r["decision"] == "refused" for r in replies):
        return 1
    return 1 if args.wait and any(ended.get(i) != "succeeded" for i in accepted) else 0


async def _follow(
    ended: dict[str, str], changed: asyncio.Event, ids: list[str], args: argparse.Namespace,
    out: Console,
) -> None:  # fmt: skip
    """A progress bar of ended jobs until every one has ended (or --timeout-s)."""
    bar = Progress(
        TextColumn("jobs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}"), console=out, disable=args.json,
        transient=False,
    )  # fmt: skip
    want = set(ids)

    async def loop() -> None:
        with bar:
            task = bar.add_task("jobs", total=len(want), detail="")
            while True:
                done = {i: s for i, s in ended.items() if i in want}
                bad = sum(1 for s in done.values() if s != "succeeded")
                bar.update(task, completed=len(done), detail=f"{bad} failed" if bad else "")
                if len(done) == len(want):
                    return
                changed.clear()
                await changed.wait()

    try:
        await asyncio.wait_for(loop(), args.timeout_s)
    except TimeoutError:
        print(f"fleet jobs: not every job ended within {args.timeout_s:g} s", file=sys.stderr)
