"""The `fleet` command: one verb per module in tools/verbs, discovered at start.

A verb module defines `register(sub)` that adds its parser to `sub` (the
argparse subparsers) and sets `func=handler`, where `handler(args) -> int` is
the exit code. `ORDER` fixes how verbs are listed in `fleet --help`.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from importlib import metadata

from nats.errors import BadSubjectError

from contracts.subjects import SubjectError
from tools import verbs

ORDER = [
    "up",
    "init",
    "run",
    "status",
    "tail",
    "approve",
    "offers",
    "place",
    "providers",
    "ask",
    "jobs",
    "mcp",
    "replay",
    "bench",
    "loadgen",
    "contracts",
]

EPILOG = """examples:
  fleet up                      start NATS and every service with the simulated fleet
  fleet status                  services, streams, pools and budget at a glance
  fleet tail --since 10m        follow events, one line each
  fleet contracts asyncapi      the wire contract as AsyncAPI 3.0
"""


def version() -> str:
    """The installed fleetplane distribution's version (pyproject.toml's, once installed)."""
    try:
        return metadata.version("fleetplane")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleet",
        description="fleetplane: keeps GPU fleets and hosted agents at the capacity their "
        "load needs, at the lowest cost, inside a hard budget.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fleet {version()}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    names = [m.name for m in pkgutil.iter_modules(verbs.__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    for name in names:
        module = importlib.import_module(f"tools.verbs.{name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `fleet ... | head`: the reader left; that is not an error.
        sys.stderr.close()
        return 0
    except SubjectError as exc:  # a name given on the command line that no subject takes
        print(f"fleet {args.verb}: {exc}", file=sys.stderr)
        return 2
    except BadSubjectError:
        print(
            f"fleet {args.verb}: not a valid NATS subject: tokens of letters, digits, _ and -"
            " joined by '.', no spaces or empty tokens; '*' matches one token, '>' the rest",
            file=sys.stderr,
        )
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
