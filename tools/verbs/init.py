"""`fleet init`: the admin step that creates every stream, durable and KV bucket."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from rich.console import Console

from services.kit.config import resolve_nats_url
from services.kit.errors import ConfigError
from tools.configcheck import CONFIG_ERROR_EXIT, exit_on_error
from tools.secure.admin import init_server, summary
from tools.secure.setup import CREDS_DIR, admin_seed, plan_from_config, write_secured


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "init",
        help="create every stream, durable consumer and KV bucket (the admin step)",
        description="Create the streams, the services' durable consumers, each pool's job "
        "consumers and the KV buckets from the contract and fleet.toml (pools, hosted agents, "
        "lease length, replicas), as the admin. `fleet up` runs it; a secured deployment "
        "(`fleet up --secure`, the k8s init job) must, since its services may only bind. "
        "Running it again changes nothing that exists. With --identities it first writes an "
        "nkey seed per service, the operator, the admin and each `[nats] tenants` entry "
        "under --creds (0600, existing ones kept) and the nats-server authorization for "
        "them (<creds>/auth.conf); --identities-only stops there, without a server.",
        epilog="examples:\n  fleet init --nats nats://127.0.0.1:4222\n"
        "  fleet init --identities-only --creds ./creds   # seeds and auth.conf for a cluster",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="fleet.toml (default: ./fleet.toml, FLEET_CONFIG)")
    p.add_argument("--nats", help="NATS URL (default: FLEET_NATS_URL, .fleet/nats.url)")
    p.add_argument("--creds", default=str(CREDS_DIR), help="identities directory")
    p.add_argument("--identities", action="store_true", help="write identities and auth.conf")
    p.add_argument(
        "--identities-only", action="store_true", help="write them, then stop (no server)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    bad = exit_on_error("fleet init", args.config)
    if bad is not None:
        return bad
    creds = Path(args.creds)
    try:
        plan, _ = plan_from_config(args.config)
        if args.identities or args.identities_only:
            secured = write_secured(args.config, creds)
            console.print(
                f"fleet init: {len(secured.identities)} identities in {creds}/, "
                f"server authorization in {secured.auth_file}"
            )
            if args.identities_only:
                return 0
    except (ConfigError, ValueError) as exc:
        console.print(f"[red]fleet init: {exc}[/]")
        return CONFIG_ERROR_EXIT
    seed = admin_seed(creds)
    try:
        report = asyncio.run(init_server(resolve_nats_url(args.nats), plan, seed))
    except Exception as exc:
        console.print(f"[red]fleet init: {exc or type(exc).__name__}[/]")
        return 1
    console.print(summary(report), soft_wrap=True)
    return 0
