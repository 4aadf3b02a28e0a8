"""`fleet agents create|list|delete`: hosted agents as a runtime resource, per-user quota."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import re
import sys
from pathlib import Path
from typing import Any

from contracts.api.ops import op
from tools.natsops import ask_json, cli_connect

TIMEOUT_S = 10.0
CREATE_TIMEOUT_S = 90.0
"""A create whose agent gets a runner of its own waits for it (`[gateway]
agent_start_timeout_s`, 60 s), so the CLI waits longer."""


def _me() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", getpass.getuser())[:64] or "user"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "agents",
        help="hosted agents: create, list, delete (per-user quota)",
        description="Hosted agents created at runtime: each answers as A2A agent "
        "`agents.<name>` (`fleet ask --agent agents.NAME`), served by every runner (or, with "
        "`[gateway] agent_runtime`, by a runner of its own of its cores and memory), with its own "
        "system prompt, model, fleet tools and runner resources; each user may have "
        "`[gateway] agents_per_user` (50) of them.",
        epilog="examples:\n"
        "  fleet agents create support --prompt 'You answer billing questions.' --cores 2\n"
        "  fleet agents list --user alice --json\n"
        "  fleet agents delete support",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = verbs.add_parser("create", help="create an agent")
    create.add_argument("name", help="agent name: a-z, 0-9, _ and -")
    prompt = create.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="its system prompt")
    prompt.add_argument("--prompt-file", type=Path, help="a file holding its system prompt")
    create.add_argument("--model", default="sim", help="sim (default) or a Claude model id")
    create.add_argument(
        "--tool", action="append", default=[], dest="tools", help="a fleet tool it may use"
    )
    create.add_argument("--cores", type=int, default=1, help="vCPUs per runner (1)")
    create.add_argument("--memory-mb", type=int, default=512, help="MiB per runner (512)")
    listing = verbs.add_parser("list", help="list agents")
    listing.add_argument("--all", action="store_true", help="every user's agents")
    delete = verbs.add_parser("delete", help="delete an agent")
    delete.add_argument("name")
    for q in (create, listing, delete):
        q.add_argument("--user", default=_me(), help="whose agents (default: your login)")
        q.add_argument("--nats", help="NATS URL (default: FLEET_NATS_URL, then .fleet/nats.url)")
        q.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def request_of(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The fleet.api operation and body the arguments ask for."""
    if args.action == "create":
        text = args.prompt if args.prompt is not None else args.prompt_file.read_text()
        body = {
            "name": args.name,
            "user": args.user,
            "system_prompt": text,
            "model": args.model,
            "tools": args.tools,
            "cores": args.cores,
            "memory_mb": args.memory_mb,
            "requester": "cli",
        }
        return "agents.create", body
    if args.action == "delete":
        return "agents.delete", {"name": args.name, "user": args.user, "requester": "cli"}
    return "agents.list", {} if args.all else {"user": args.user}


def timeout_of(name: str) -> float:
    """How long to wait for the answer to operation `name`, seconds."""
    return CREATE_TIMEOUT_S if name == "agents.create" else TIMEOUT_S


async def _call(url: str | None, name: str, body: dict[str, Any]) -> Any:
    nc = await cli_connect(url)
    try:
        return await ask_json(nc, op(name).subject, body, timeout_s=timeout_of(name))
    finally:
        await nc.close()


def run(args: argparse.Namespace) -> int:
    """Send the request; print the agents (or the error); 0 when it took effect."""
    try:
        name, body = request_of(args)
    except OSError as exc:
        print(f"fleet: cannot read the prompt file: {exc}", file=sys.stderr)
        return 1
    answer = asyncio.run(_call(args.nats, name, body))
    if answer is None:
        print(
            f"fleet: fleet.api.{name} did not answer in {timeout_of(name):g} s; is the gateway "
            "running? (`fleet status`)",
            file=sys.stderr,
        )
        return 1
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        print(f"fleet: {answer['error'].get('message')}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    verb = {"agents.create": "created", "agents.delete": "deleted"}.get(name)
    for a in answer.get("agents", []):
        head = f"{verb} " if verb else ""
        print(
            f"{head}agents.{a['name']} (user {a['user']}, model {a['model']}, {a['cores']} "
            f"cores, {a['memory_mb']} MiB, tools: {', '.join(a['tools']) or 'none'})"
        )
    if not answer.get("agents"):
        print("no agents")
    runner = answer.get("runner")
    if runner:
        where = (
            f"unit {runner['unit']} on {runner['provider']}"
            if runner["unit"]
            else (f"on {runner['provider']}")
        )
        print(
            f"its runner: {where}, {runner['state']} ({runner['cores']} vCPUs, "
            f"{runner['memory_mb']} MiB, ${runner['usd_per_hour']:.4f}/h)"
            + (f": {runner['reason']}" if runner["state"] != "ready" else "")
        )
    if not (args.action == "list" and args.all):
        print(f"{answer.get('used', 0)} of {answer.get('quota', 0)} agents used by {args.user}")
    return 0
