"""`fleet providers check`: do the providers' real answers have the shapes the adapters read?"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from tools.market.check import check_all, render, to_json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "providers",
        help="check the providers' API shapes with your own key (read-only)",
        description="Provider tools. `check` makes read-only calls (offers, instance list) "
        "with the keys from fleet.toml / FLEET_<NAME>_KEY and the provider's own variable, "
        "and reports field by field whether each answer has the shape the adapter reads. "
        "Exit 0 when every configured provider matches; 1 on a mismatch, a refused key or "
        "an error; 2 on bad input.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  fleet providers check\n  fleet providers check --provider runpod "
        "--json",
    )
    verbs = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = verbs.add_parser("check", help="read-only shape check, field by field, in under 10 s")
    c.add_argument("--provider", metavar="P", help="only this provider")
    c.add_argument("--config", metavar="FILE", help="fleet.toml (default: ./fleet.toml)")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    """`fleet providers check`."""
    try:
        results, took = asyncio.run(check_all(args.provider, args.config))
    except ValueError as exc:
        print(f"fleet providers check: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(json.dumps(to_json(results, took), indent=2) + "\n")
    else:
        print(render(results, took))
    failed = False
    for r in results:
        if r.state in ("auth", "error", "mismatch"):
            failed = True
            if r.state != "mismatch":
                print(f"fleet providers check: {r.name}: {r.detail}", file=sys.stderr)
        if r.state == "unavailable" and args.provider:
            failed = True
    if not any(r.state != "unavailable" for r in results):
        print("fleet providers check: no provider is configured", file=sys.stderr)
        failed = True
    return 1 if failed else 0
