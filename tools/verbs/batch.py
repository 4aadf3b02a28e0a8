"""`fleet batch plan|run|status`: N items under a cost cap and a deadline, through
`fleet.api.batch.*`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from contracts import subjects
from contracts.batchplan import duration
from tools.natsops import api_call, cli_connect
from tools.termout import stdout_console
from tools.verbs.tail import parse_since

NATS_HELP = "NATS URL (default: FLEET_NATS_URL, then .fleet/nats.url)"


def seconds(text: str) -> float:
    """`6h`, `90m`, `30s`, `1d` or plain seconds, as an argparse type."""
    return parse_since(text).total_seconds()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "batch",
        help="a batch of N items under a cost cap and a deadline: plan it, run it",
        description="Plan: for each allowed GPU model and count, the wall time (provisioning "
        "included) and cost from live offers, and the cheapest option that meets the deadline "
        "and the cap, or plainly none and what would. Run: the GPUs provisioned through the "
        "cost-guard, the items split into jobs with retries, progress, every unit released, "
        "and actual against planned time and cost.",
        epilog="examples:\n"
        "  fleet batch plan --items 1000 --per-item-s 18 --gpu RTX4090 --max-usd 100\n"
        "  fleet batch plan --items 1000 --per-item-s 18 --deadline 2h --json > plan.json\n"
        "  fleet batch run --plan plan.json --progress-every 30m\n"
        "  fleet batch status",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = p.add_subparsers(dest="batch_verb", metavar="VERB", required=True)
    plan = verbs.add_parser("plan", help="the options and the cheapest that fits; rents nothing")
    run = verbs.add_parser("run", help="plan (or take --plan FILE) and carry it out")
    for q in (plan, run):
        q.add_argument("--items", type=int, help="items in the batch")
        q.add_argument("--per-item-s", type=float, help="seconds per item on the reference GPU")
        q.add_argument("--gpu", action="append", metavar="MODEL", help="allowed model (repeat)")
        q.add_argument(
            "--ref-gpu",
            metavar="MODEL",
            help="the GPU --per-item-s was measured on (default: the first --gpu, else H100)",
        )
        q.add_argument("--max-usd", type=float, help="cost cap of the whole batch")
        q.add_argument("--deadline", type=seconds, help="done within: 6h, 90m, 1d")
        q.add_argument("--max-gpus", type=int, default=64, help="most GPUs to rent (64)")
        q.add_argument("--provider", help="only this provider's offers")
        q.add_argument(
            "--lead-s",
            type=float,
            help="provisioning lead time, seconds (default: the scaler's figure)",
        )
        q.add_argument("--json", action="store_true", help="machine-readable output")
        q.add_argument("--nats", help=NATS_HELP)
    run.add_argument(
        "--plan",
        type=Path,
        metavar="FILE",
        help="run the chosen option of `fleet batch plan --json` saved in FILE",
    )
    run.add_argument(
        "--progress-every", type=seconds, default=1800.0, help="progress events this often (30m)"
    )
    run.add_argument("--jobs-per-gpu", type=int, default=8, help="jobs the items make per GPU")
    run.add_argument("--attempts", type=int, default=3, help="deliveries of a job (retries)")
    run.add_argument("--id", help="the batch's id (default: a new one)")
    run.add_argument("--detach", action="store_true", help="start it and return")
    st = verbs.add_parser("status", help="a run's progress, or the latest runs")
    st.add_argument("id", nargs="?")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.add_argument("--nats", help=NATS_HELP)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_main(args))
    except KeyboardInterrupt:
        print(
            "fleet batch: stopped following; the run goes on (`fleet batch status`)",
            file=sys.stderr,
        )
        return 130


def plan_body(args: argparse.Namespace) -> dict[str, Any]:
    """The `batch.plan` request from the flags (or from --plan FILE for a run)."""
    saved = getattr(args, "plan", None)
    if saved is not None:
        try:
            plan = json.loads(saved.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"fleet batch: --plan {saved}: {exc}") from None
        if not isinstance(plan, dict) or not plan.get("chosen"):
            why = (plan.get("reason") if isinstance(plan, dict) else None) or (
                "it has no `chosen` option: save the output of `fleet batch plan --json`"
            )
            raise SystemExit(f"fleet batch: --plan {saved} chose no option: {why}")
        keys = ("items", "per_item_s", "ref_gpu", "max_usd", "deadline_s")
        body = {k: plan[k] for k in keys if plan.get(k) is not None}
        return {**body, "option": plan["chosen"], "gpu_models": [plan["chosen"]["gpu_model"]]}
    if args.items is None or args.per_item_s is None:
        raise SystemExit("fleet batch: --items and --per-item-s are required (or --plan FILE)")
    pairs = [
        ("items", args.items),
        ("per_item_s", args.per_item_s),
        ("gpu_models", args.gpu),
        ("ref_gpu", args.ref_gpu),
        ("max_usd", args.max_usd),
        ("deadline_s", args.deadline),
        ("max_gpus", args.max_gpus),
        ("provider", args.provider),
        ("lead_time_s", args.lead_s),
    ]
    return {k: v for k, v in pairs if v is not None}


async def _call(nc: Client, op: str, body: dict[str, Any], timeout_s: float = 15.0) -> Any:
    return await api_call(nc, op, body, "batch", timeout_s)


async def _main(args: argparse.Namespace) -> int:
    nc = await cli_connect(args.nats, "fleet-batch")
    out = stdout_console(highlight=False, soft_wrap=True)
    try:
        if args.batch_verb == "plan":
            plan = await _call(nc, "batch.plan", plan_body(args))
            if args.json:
                print(json.dumps(plan))
            else:
                show_plan(plan, out)
            return 0 if plan["ok"] else 1
        if args.batch_verb == "status":
            body = {"id": args.id} if args.id else {}
            runs = (await _call(nc, "batch.status", body))["runs"]
            if args.json:
                print(json.dumps(runs if not args.id else runs[0]))
            else:
                for r in runs:
                    out.print(status_line(r), markup=False)
                if not runs:
                    out.print("no batch runs on this gateway yet")
            return 0
        return await _run(nc, args, out)
    finally:
        await nc.close()


def show_plan(plan: dict[str, Any], out: Console) -> None:
    """The options table, then the choice (or why none) and what was left out."""
    chosen = plan.get("chosen") or {}
    marks = {(o["gpu_model"], o["count"]) for o in plan.get("instead", [])}
    table = Table(
        "GPU",
        "count",
        "wall time",
        "cost",
        "$/h each",
        "provider",
        "fits",
        title=f"{plan['items']} items x {plan['per_item_s']:g} s on {plan['ref_gpu']}",
    )
    for o in plan["options"]:
        key = (o["gpu_model"], o["count"])
        fits = (
            "yes"
            if o["meets_deadline"] and o["within_cap"]
            else ("late" if not o["meets_deadline"] else "over cap")
        )
        note = (
            " <- chosen"
            if key == (chosen.get("gpu_model"), chosen.get("count"))
            else (" <- nearest" if key in marks else "")
        )
        style = "bold green" if note == " <- chosen" else ("yellow" if note else None)
        table.add_row(
            o["gpu_model"],
            str(o["count"]),
            duration(o["wall_s"]),
            f"${o['cost_usd']:,.2f}",
            f"{o['usd_per_hour']:.2f}",
            o["provider"],
            fits + note,
            style=style,
        )
    out.print(table)
    label = "[bold green]chosen:[/]" if plan["ok"] else "[bold red]none fits:[/]"
    out.print(f"{label} {plan['reason']}")
    for note in plan.get("notes", []):
        out.print(f"  note: {note}", style="dim", markup=False)


def status_line(s: dict[str, Any]) -> str:
    o = s.get("option") or {}
    planned = f"${o.get('cost_usd', 0):,.2f}/{duration(o.get('wall_s', 0))}" if o else "-"
    return (
        f"{s['id']} {s['state'].upper()} {s['items_done']}/{s['items']} items, "
        f"{s['units_live']}/{len(s['units'])} units live, ${s['actual_usd']:,.4f} in "
        f"{duration(s['elapsed_s'])} (planned {planned}): {s['reason']}"
    )


async def _run(nc: Client, args: argparse.Namespace, out: Console) -> int:
    batch_id = args.id or f"batch-{uuid.uuid4().hex[:12]}"
    body = {
        **plan_body(args),
        "id": batch_id,
        "progress_every_s": args.progress_every,
        "jobs_per_gpu": args.jobs_per_gpu,
        "attempts": args.attempts,
        "requester": "cli",
    }
    sizes: dict[str, int] = {}
    done: dict[str, str] = {}
    final: dict[str, Any] = {}
    changed = asyncio.Event()

    async def on_job(msg: Any) -> None:
        if not msg.subject.startswith(f"fleet.job.{batch_id}-"):
            return
        ev = json.loads(msg.data)
        spec = ev.get("spec") or {}
        if spec.get("data", {}).get("items") is not None:
            sizes[ev["job"]] = int(spec["data"]["items"])
        if ev.get("state") in ("succeeded", "dead", "cancelled", "refused"):
            done.setdefault(ev["job"], ev["state"])
            changed.set()

    async def on_status(msg: Any) -> None:
        st = json.loads(msg.data)
        if not args.json:
            out.print(f"[{st['state']}] {st['reason']}", markup=False, style="dim")
        if st.get("finished"):
            final.update(st)
        changed.set()

    subs = (
        []
        if args.detach
        else [
            await nc.subscribe(subjects.JOB_EVENTS_ALL, cb=on_job),
            await nc.subscribe(subjects.batch(batch_id), cb=on_status),
        ]
    )
    reply = await _call(nc, "batch.run", body, 40.0)
    if not reply["ok"]:
        if reply.get("plan") and not args.json:
            show_plan(reply["plan"], out)
        print(json.dumps(reply) if args.json else f"fleet batch: {reply['reason']}")
        return 1
    if not args.json:
        out.print(f"{batch_id}: {reply['reason']}", markup=False)
    if args.detach:
        if args.json:
            print(json.dumps(reply))
        return 0
    items = int(body.get("items") or reply["plan"]["items"])
    bar = Progress(
        TextColumn("items"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}"),
        console=out,
        disable=args.json,
    )
    with bar:
        task = bar.add_task("items", total=items, detail="")
        while not final:
            ok = sum(sizes.get(j, 0) for j, s in done.items() if s == "succeeded")
            bad = sum(1 for s in done.values() if s != "succeeded")
            bar.update(task, completed=ok, detail=f"{bad} job(s) failed" if bad else "")
            changed.clear()
            await changed.wait()
        bar.update(task, completed=final.get("items_done", 0))
    for sub in subs:
        await sub.unsubscribe()
    if args.json:
        print(json.dumps({"plan": reply["plan"], "status": final}))
    else:
        show_summary(final, out)
    return 0 if final.get("state") == "succeeded" else 1


def show_summary(st: dict[str, Any], out: Console) -> None:
    """Planned against actual, in a table."""
    o = st.get("option") or {}
    table = Table("", "planned", "actual", title=f"batch {st['id']}: {st['state']}")
    table.add_row("wall time", duration(o.get("wall_s", 0)), duration(st["elapsed_s"]))
    table.add_row("cost", f"${o.get('cost_usd', 0):,.4f}", f"${st['actual_usd']:,.4f}")
    table.add_row(
        "items", str(st["items"]), f"{st['items_done']} done, {st['items_failed']} failed"
    )
    table.add_row(
        "GPUs",
        f"{o.get('count', 0)} x {o.get('gpu_model', '?')}",
        f"{len(st['units'])} rented, {st['units_live']} still live",
    )
    out.print(table)
    out.print(st["reason"], markup=False)
