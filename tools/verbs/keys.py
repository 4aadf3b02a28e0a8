"""`fleet keys new FILE` / `fleet keys public FILE`: the nkeys that sign what moves money."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.kit.errors import ConfigError
from services.kit.signing import Signer, new_seed, read_seed, write_seed


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "keys",
        help="make a signing key, or print a seed file's public key",
        description="The cost-guard signs verdicts, the provisioner unit events and operators "
        "their decisions with Ed25519 nkeys (docs/adr/0012-signed-messages.md). `new` writes a "
        "fresh seed to FILE (mode 0600) and prints its public key, which goes into the "
        "readers' [signing] settings; `public` prints the public key of an existing seed file. "
        "The seed itself is never printed. `fleet up` makes the keys it needs by itself.",
        epilog="examples:\n  fleet keys new ~/.fleet-operator.nk\n"
        "  fleet keys public .fleet/keys/costguard.nk",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=["new", "public"])
    p.add_argument("file", metavar="FILE", help="the seed file")
    p.add_argument("--force", action="store_true", help="new: replace an existing FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        if args.action == "new":
            if path.exists() and not args.force:
                print(f"fleet keys: {path} exists; pass --force to replace it", file=sys.stderr)
                return 1
            write_seed(path, new_seed())
        print(Signer(read_seed(path)).public_key)
    except (ConfigError, OSError) as exc:
        print(f"fleet keys: {exc}", file=sys.stderr)
        return 1
    return 0
