"""`fleet bench [watcher|loop|runner|jobs|all] [--json]`: benchmarks with a same-run baseline."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from tools.bench import TARGETS
from tools.bench.progress import BenchProgress


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmarks with a same-run baseline",
        description="Measure a part of fleetplane next to a baseline run at the same time "
        "on the same machine, and say whether it meets its goal.",
        epilog="examples:\n  fleet bench watcher\n  fleet bench watcher --events 200000 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", nargs="?", default="all", choices=[*TARGETS, "all"])
    p.add_argument("--json", action="store_true", help="machine-readable results")
    p.add_argument(
        "--events", type=int, default=500_000, help="telemetry events to publish (watcher)"
    )
    p.add_argument("--units", type=int, default=10_000, help="units sending telemetry (watcher)")
    p.add_argument("--pools", type=int, default=100, help="pools the units belong to (watcher)")
    for target in TARGETS:  # a benchmark module may add options of its own
        module = _module(target)
        if module is not None and hasattr(module, "add_arguments"):
            module.add_arguments(p)
    p.set_defaults(func=run)


def _module(target: str) -> object | None:
    name = f"tools.bench.{target}"
    if importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


def run(args: argparse.Namespace) -> int:
    targets = TARGETS if args.target == "all" else (args.target,)
    code = 0
    with BenchProgress(quiet=args.json) as progress:
        for target in targets:
            module = _module(target)
            if module is None:
                print(f"fleet bench {target}: not implemented yet", file=sys.stderr)
                code = max(code, 2) if args.target != "all" else code
                continue
            progress.start(target)
            code = max(code, int(module.run(args)))  # type: ignore[attr-defined]
    return code
