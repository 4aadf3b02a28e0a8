"""`fleet contracts schema|asyncapi`: the wire contract, generated from the Structs."""

from __future__ import annotations

import argparse
import json
import sys

from contracts.schema import asyncapi, json_schema


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "contracts",
        help="print the contract as JSON Schema or AsyncAPI 3.0",
        description="Print the wire contract, generated from the msgspec Structs in contracts/.",
        epilog="example: fleet contracts asyncapi > asyncapi.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("what", choices=["schema", "asyncapi"], help="which document to print")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import tools.contract_extras  # noqa: F401  (registers API and A2A channels)

    doc = json_schema() if args.what == "schema" else asyncapi()
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
