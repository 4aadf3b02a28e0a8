"""`fleet run SERVICE`: one service in the foreground (what a container runs)."""

from __future__ import annotations

import argparse
import sys

from services.kit.errors import ConfigError
from tools.configcheck import CONFIG_ERROR_EXIT, exit_on_error
from tools.registry import ORDER, available, load


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run one service in the foreground",
        description="Run one service in the foreground until SIGTERM or Ctrl-C; "
        "what a container runs.",
        epilog="example: FLEET_NATS_URL=nats://nats:4222 fleet run costguard",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("service", choices=ORDER, help="the service to run")
    p.add_argument("--config", help="fleet.toml to read (default: ./fleet.toml, FLEET_CONFIG)")
    p.add_argument("--nats", help="NATS URL (default: FLEET_NATS_URL, then .fleet/nats.url)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.service not in available():
        print(f"fleet run: service {args.service!r} is not built yet", file=sys.stderr)
        return 2
    # The whole file, for every service, as README's Configuration says: a typo in
    # another service's table is found now, not when that service starts.
    bad = exit_on_error(f"fleet run {args.service}", args.config)
    if bad is not None:
        return bad
    service = load(args.service)
    try:
        code: int = service.main(config=args.config, nats_url=args.nats)
    except ConfigError as exc:  # found while starting (a provider's table, say): one line
        print(f"fleet run {args.service}: {exc}", file=sys.stderr)
        return CONFIG_ERROR_EXIT
    return code
