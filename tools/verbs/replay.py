"""`fleet replay TRACE`: the scaler's decide() in virtual time against baselines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from services.scaler.policy import Policy

DESCRIPTION = """\
Replay a workload trace against the scaler's decide() and the reactive
baselines (hpa: Kubernetes HPA defaults; kpa: Knative KPA defaults), in virtual
time, one step per second, and print under-provisioning and cost per policy.

Traces, plain, gzip, bzip2 or a tar of one file (told by content, not name):
- per-second counts, whitespace-separated;
- per-interval CSV `period,count`, the period a number of seconds (x --period-s)
  or a date-time (`1998-04-30 21:30:00,2`), the interval the step between the
  first two rows; a header with a `count` column says this shape, whatever the
  period column is called (`timestamp,count` too; --time-column says a request
  CSV instead);
- per-interval columns ("wide", as Azure Functions' invocation counts
  `HashOwner,...,Trigger,1,2,...,1440`): the header's last columns numbered in
  even steps, each an interval (x --period-s: 60 for Azure's minutes), one row
  per series, each interval's count the sum over the rows;
- request CSV, one row per request, with a header naming its time column
  (--time-column, default `timestamp`; epoch seconds (x --period-s) or
  date-times, UTC unless they carry an offset such as `+00:00`);
- requests as JSON Lines, one object a line, its keys read as a request CSV's
  header (Mooncake: --token-columns input_length,output_length --period-s 0.001).
Demand (requests in flight): with --duration-column each request is in flight
that many seconds; with --end-column until that time (an empty end: until the
trace's last time); with token columns (ContextTokens/GeneratedTokens, or the
two --token-columns names) the token model (prompt at 5,000 tokens/s,
generation at 50 tokens/s); otherwise Little's law, each request served for
--service-s seconds.

Units are ready --lead-time seconds after being asked for and billed from
then; scale-in removes them at once. under unit-s = sum over seconds of
max(0, demand/unit_capacity - ready units).

Zero runs: runs of at least --skip-zero-runs seconds with no demand (the
Twitter trace's daily ~29-minute collection gap) are treated as missing
telemetry, not silence: the policies are not called, the pool stays as it
was, and those seconds are neither scored nor billed. Shorter zero runs are
real silence. --skip-zero-runs 0 treats every zero as silence.

Notes on stderr (and in the JSON's meta.notes) say what shapes the numbers
without being an error: seconds left unscored as zero runs, demand needing
more than --max units, the units allowed when --max is not given (sized to the
trace's peak when it needs over 1000), times that look like epoch milliseconds,
and where --config's policy and price came from.

The whole trace is replayed by default (22 days of Twitter take ~15 s for all
three policies); --start/--duration select a window.

--sweep: every policy runs at each setting of one aggressiveness knob, target
utilization 0.4 ... 0.95 (ours' meaning of the knob: tools/replay/policies.py
`ours_at`), in worker processes, and the table gives each policy's frontier of
(unit-hours, under unit-s, actions). The headline reads ours' frontier at each
baseline's default unit-hours (baselines default to a 0.7 target) by linear
interpolation, never extrapolating, and compares. The acceptance verdict is
against the better baseline, the one with fewer under unit-s at its default:
met when ours has <= 0.6x its under unit-s and no more actions. Beside it,
"least possible" is a lower bound: the fewest under unit-s any policy could
leave at the baseline's unit-hours, even one that knows the whole trace; above
0.6x the verdict reads "missed (out of reach)". The exit code is 0 either way.
"""

EPILOG = """examples:
  fleet replay twitter.tbz2 --lead-time 120 --unit-capacity 8
  fleet replay azure.csv --policy ours hpa kpa --sweep --json out.json
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="the scaler's decide() in virtual time vs. HPA and KPA baselines",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("trace", type=Path, nargs="?", help="trace file")
    p.add_argument(
        "--policy",
        action="extend",
        nargs="+",
        choices=["ours", "hpa", "kpa"],
        help="policies to run: several after one flag or the flag repeated (default: all three)",
    )
    p.add_argument(
        "--time-column",
        default=None,
        metavar="NAME",
        help="request CSV: the column with each request's time (epoch s or date-time)",
    )
    p.add_argument(
        "--duration-column",
        default=None,
        metavar="NAME",
        help="request CSV: the column with each request's seconds in service",
    )
    p.add_argument(
        "--end-column",
        default=None,
        metavar="NAME",
        help="request CSV: the column with each request's end time (instead of a duration)",
    )
    p.add_argument(
        "--token-columns",
        default=None,
        metavar="PROMPT,GENERATED",
        help="request CSV: the prompt and generated token columns for the token model "
        "(default ContextTokens,GeneratedTokens when present)",
    )
    p.add_argument(
        "--period-s",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds per unit of a numeric period or request time (60: minute numbers; "
        "0.001: epoch milliseconds)",
    )
    p.add_argument(
        "--unit-capacity", type=float, default=None, help="requests in flight per unit (8)"
    )
    p.add_argument("--lead-time", type=float, default=None, help="seconds from ask to ready (120)")
    p.add_argument(
        "--price",
        type=float,
        default=None,
        help="USD per unit-hour (default: the pool's max_usd_per_hour with --config, else 1)",
    )
    p.add_argument("--service-s", type=float, default=1.0, help="seconds each request is served")
    p.add_argument("--min", type=int, default=None, help="fewest units (1)")
    p.add_argument(
        "--max",
        type=int,
        default=None,
        help="most units (default: 1000, or what the trace's peak needs at 0.4 target "
        "utilization when more)",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FLEET_TOML",
        help="replay ours as configured for --pool in this fleet.toml",
    )
    p.add_argument("--pool", default=None, help="the pool whose configured policy to replay")
    p.add_argument(
        "--from-stream",
        default=None,
        metavar="POOL",
        help="replay the pool's recorded metrics from FLEET_METRICS (what-if)",
    )
    p.add_argument(
        "--days", type=float, default=7.0, help="with --from-stream: how far back to read"
    )
    p.add_argument("--nats", default=None, help="NATS URL for --from-stream")
    p.add_argument(
        "--start", type=int, default=0, help="first second of the trace (each, with --eval)"
    )
    p.add_argument(
        "--duration",
        type=int,
        default=None,
        help="seconds to replay (default: all; with --eval, of each trace)",
    )
    p.add_argument(
        "--skip-zero-runs",
        type=int,
        default=600,
        metavar="S",
        help="zero runs this long are missing telemetry (0: all zeros are silence)",
    )
    p.add_argument(
        "--sweep",
        action="store_true",
        help="run each policy at every knob setting; print frontiers and the headline",
    )
    p.add_argument(
        "--eval",
        type=Path,
        nargs="+",
        default=None,
        metavar="PATH",
        help="sweep every trace of these files/directories; one table of verdicts",
    )
    p.add_argument(
        "--set",
        dest="set_values",
        default=None,
        metavar="KEY=V1,V2",
        help="with --eval: leave-one-out over these values of one policy field",
    )
    p.add_argument(
        "--jobs", type=int, default=None, metavar="N", help="worker processes (default: up to 2)"
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="FILE.png",
        help="draw frontiers and the worst 10 min",
    )
    p.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="write totals, series and frontiers as JSON ('-': to stdout, no table)",
    )
    p.set_defaults(func=run)


def _bad(msg: str) -> int:
    print(f"fleet replay: {msg}", file=sys.stderr)
    return 2


def _setup(args: argparse.Namespace) -> tuple[Policy, float, list[str]]:
    """Ours' settings and the unit price: the pool's configured ones (if --config), then
    the flags; with notes saying where they came from when that is not plain."""
    from services.scaler.policy import Policy
    from tools.replay.poolconfig import pool_setup
    from tools.replay.workload import MAX_FLOOR

    keys = {
        "unit_capacity": args.unit_capacity,
        "lead_time_s": args.lead_time,
        "min": args.min,
        "max": args.max,
    }
    if args.config is None:
        fallback = {"unit_capacity": 8.0, "lead_time_s": 120.0, "min": 1, "max": MAX_FLOOR}
        chosen = {k: fallback[k] if v is None else v for k, v in keys.items()}
        price = 1.0 if args.price is None else args.price
        return msgspec.convert(chosen, Policy), price, []
    setup = pool_setup(args.config, args.pool)
    policy = msgspec.structs.replace(
        setup.policy, **{k: v for k, v in keys.items() if v is not None}
    )
    notes = [] if setup.note is None else [setup.note]
    price = args.price
    if price is None:
        price = setup.usd_per_hour
        notes.append(
            f"cost at the pool's max_usd_per_hour, {price:g} USD a unit-hour (--price to change)"
        )
    return policy, price, notes


def _check(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments, if anything."""
    if args.unit_capacity is not None and args.unit_capacity <= 0:
        return "--unit-capacity must be > 0"
    if (args.lead_time or 0) < 0 or args.service_s <= 0 or (args.price or 0) < 0:
        return "--lead-time and --price must be >= 0, --service-s > 0"
    if args.start < 0 or (args.duration is not None and args.duration <= 0):
        return "--start must be >= 0 and --duration > 0"
    if args.min is not None and args.max is not None and not 0 <= args.min <= args.max:
        return "need 0 <= --min <= --max"
    if args.jobs is not None and args.jobs < 1:
        return "--jobs must be >= 1"
    if args.skip_zero_runs < 0:
        return (
            f"--skip-zero-runs {args.skip_zero_runs}: give seconds >= 0 (0: every zero is silence)"
        )
    if sum(x is not None for x in (args.trace, args.eval, args.from_stream)) != 1:
        return "give one of: a TRACE file, --eval PATH..., --from-stream POOL"
    if args.set_values is not None and args.eval is None:
        return "--set needs --eval"
    if (args.config is None) != (args.pool is None):
        return "--config and --pool go together"
    if args.days <= 0:
        return "--days must be > 0"
    return None


def run(args: argparse.Namespace) -> int:
    """Check the arguments, then hand over to tools.replay.command (or evaluate)."""
    from tools.replay.command import Options, execute
    from tools.replay.sweep import jobs_default
    from tools.replay.traces import TraceError, read_trace

    problem = _check(args)
    if problem is not None:
        return _bad(problem)
    try:
        policy, price, notes = _setup(args)
        max_given = args.max is not None or args.config is not None  # else sized to the trace
        if args.eval is not None:
            from tools.replay.evaluate import evaluate
            from tools.replay.notes import print_notes

            print_notes(notes)

            return evaluate(
                args.eval,
                policy,
                set_arg=args.set_values,
                service_s=args.service_s,
                price=price,
                workers=args.jobs or jobs_default(),
                start_s=args.start,
                duration_s=args.duration,
                max_given=max_given,
            )
        if args.from_stream is not None:
            import asyncio

            from tools.replay.stream import fetch, to_trace

            metrics, bad = asyncio.run(fetch(args.nats, args.from_stream, args.days))
            if bad:
                print(f"fleet replay: skipped {bad} undecodable message(s)", file=sys.stderr)
            trace = to_trace(metrics, args.from_stream)
            source = f"stream FLEET_METRICS fleet.metrics.{args.from_stream}"
        else:
            trace = read_trace(
                args.trace,
                time_column=args.time_column,
                duration_column=args.duration_column,
                period_s=args.period_s,
                end_column=args.end_column,
                token_columns=args.token_columns,
            )
            source = str(args.trace)
        opts = Options(
            names=list(dict.fromkeys(args.policy or ["ours", "hpa", "kpa"])),
            policy=policy,
            service_s=args.service_s,
            price=price,
            start_s=args.start,
            duration_s=args.duration,
            skip_zero_runs_s=args.skip_zero_runs,
            sweep=args.sweep,
            jobs=args.jobs,
            json=args.json,
            plot=args.plot,
            source=source,
            notes=notes,
            max_given=max_given,
        )
        return execute(trace, opts)
    except (TraceError, ValueError) as exc:
        return _bad(str(exc))
    except OSError as exc:
        return _bad(f"cannot write output: {exc}")
