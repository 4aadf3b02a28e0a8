"""`fleet keys new FILE` / `fleet keys public FILE`: the nkeys that sign what moves money;
`fleet keys deploy DIR`: every key a compose or Kubernetes deployment needs, at once."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from services.kit.errors import ConfigError
from services.kit.signing import Signer, new_seed, read_seed, write_seed
from tools.signingkeys import OPERATOR_FILE, SIGNERS, keep_key, operator_name

SIGNING_TOML = "signing.toml"
"""The `[signing]` table `deploy` writes, to append to the deployment's fleet.toml."""
SEEDS_ENV = "seeds.env"
"""The signers' seeds as `<SERVICE>_SIGNING_SEED=` lines: compose's deploy/.env."""
OPERATOR_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "keys",
        help="make signing keys, or print a seed file's public key",
        description="The cost-guard signs verdicts, the provisioner unit events, the watcher "
        "failure reports and operators their decisions with Ed25519 nkeys "
        "(docs/adr/0012-signed-messages.md). `new` writes a fresh seed to FILE (mode 0600) "
        "and prints its public key, which goes into the readers' [signing] settings; "
        "`public` prints the public key of an existing seed file. `deploy` makes, in DIR, "
        "the seeds of the cost-guard, the provisioner, the watcher and one operator (existing "
        f"ones kept), {SIGNING_TOML} (the [signing] table every service reads: append it to "
        f"the deployment's fleet.toml) and {SEEDS_ENV} (the seeds for compose's deploy/.env); "
        "docs/deploy.md says where each goes. A seed is never printed. `fleet up` makes the "
        "keys it needs by itself.",
        epilog="examples:\n  fleet keys new ~/.fleet-operator.nk\n"
        "  fleet keys public .fleet/keys/costguard.nk\n"
        "  fleet keys deploy ./signing --operator alice",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=["new", "public", "deploy"])
    p.add_argument("file", metavar="FILE|DIR", help="the seed file; for deploy, a directory")
    p.add_argument("--force", action="store_true", help="new: replace an existing FILE")
    p.add_argument(
        "--operator",
        metavar="NAME",
        help="deploy: the name of the operator key in [signing.operators] (default: your login)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        if args.action == "deploy":
            return deploy(path, args.operator or operator_name())
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


def signing_table(public: dict[str, str], operator: str, operator_key: str) -> str:
    """The `[signing]` table that tells every reader whose signatures to believe."""
    lines = ["", "# Written by `fleet keys deploy`: public keys only (no secret).", "[signing]"]
    lines += [f'{name}_key = "{public[name]}"' for name in SIGNERS]
    lines += ["", "[signing.operators]", f'"{operator_key}" = "{operator}"', ""]
    return "\n".join(lines)


def seeds_env(seeds: dict[str, bytes]) -> str:
    """The signers' seeds as env lines, named as compose.yaml and secret.example.yaml use them."""
    return "".join(f"{name.upper()}_SIGNING_SEED={seeds[name].decode()}\n" for name in SIGNERS)


def deploy(where: Path, operator: str) -> int:
    """Make (or keep) the deployment's keys in `where` and write what the services read."""
    if not OPERATOR_NAME.fullmatch(operator):
        print(
            f"fleet keys: --operator {operator!r}: use 1-64 letters, digits, '.', '_' or '-'",
            file=sys.stderr,
        )
        return 1
    made = [n for n in (*SIGNERS, "operator") if not (where / f"{n}.nk").is_file()]
    signers = {name: keep_key(where / f"{name}.nk") for name in SIGNERS}
    operator_key = keep_key(where / OPERATOR_FILE).public_key
    table = signing_table({n: s.public_key for n, s in signers.items()}, operator, operator_key)
    (where / SIGNING_TOML).write_text(table)
    write_seed(where / SEEDS_ENV, b"")  # 0600 before any seed is in it
    (where / SEEDS_ENV).write_text(seeds_env({n: read_seed(where / f"{n}.nk") for n in SIGNERS}))
    kept = [n for n in (*SIGNERS, "operator") if n not in made]
    print(
        f"fleet keys: seeds in {where}/ (made: {', '.join(made) or 'none'}; "
        f"kept: {', '.join(kept) or 'none'}), the [signing] table in {where / SIGNING_TOML}, "
        f"compose's seeds in {where / SEEDS_ENV}",
        file=sys.stderr,
    )
    print(table.strip("\n"))
    return 0
