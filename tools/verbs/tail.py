"""`fleet tail`: follow events, one readable line each (or raw JSON)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.js.api import ConsumerConfig, DeliverPolicy
from rich.console import Console

from contracts.streams import ALL_STREAMS, StreamSpec, stream_for
from contracts.subjects import covers
from tools.natsops import cli_connect
from tools.tailfmt import line

DEFAULT_SUBJECTS = ["fleet.>"]
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "tail",
        help="follow events, one readable line each",
        description="Follow subjects (default: every fleet.> subject except telemetry) and print "
        "one coloured line per event: time, subject and the fields that matter. With --since, "
        "first replays what the JetStream streams kept from that long ago.",
        epilog="examples:\n  fleet tail\n  fleet tail 'fleet.budget.>' 'fleet.unit.>' --since 10m"
        "\n  fleet tail fleet.dead.> --json\n  fleet tail fleet.telemetry.h100.> --count 5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("subjects", nargs="*", metavar="SUBJECT", help="subjects, wildcards allowed")
    p.add_argument(
        "--since", type=parse_since, help="replay from this long ago first: 30s, 10m, 2h, 1d"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--count", type=int, default=0, help="exit after this many events")
    p.add_argument("--nats", help="NATS URL (default: FLEET_NATS_URL, then .fleet/nats.url)")
    p.set_defaults(func=run)


def parse_since(text: str) -> timedelta:
    """`30s`, `10m`, `2h`, `1d` or plain seconds, as an argparse type (a bad one is a
    usage error, exit 2, like every other bad argument)."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: use a number with s, m, h or d (10m)")
    n, unit = float(match.group(1)), match.group(2) or "s"
    return timedelta(seconds=n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])


def stream_filters(patterns: list[str]) -> list[tuple[StreamSpec, str]]:
    """(stream, filter subject) pairs that replay what `patterns` ask for."""
    out: list[tuple[StreamSpec, str]] = []
    for spec in ALL_STREAMS:
        for pattern in patterns:
            for subject in spec.subjects:
                if covers(subject, pattern):
                    out.append((spec, pattern))
                elif covers(pattern, subject):
                    out.append((spec, subject))
    return list(dict.fromkeys(out))


class Printer:
    def __init__(self, as_json: bool, count: int) -> None:
        self.as_json = as_json
        self.left = count or -1
        self.console = Console(highlight=False, soft_wrap=True)
        self.done = asyncio.Event()

    def show(self, subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        if self.done.is_set():
            return
        if self.as_json:
            try:
                body: Any = json.loads(data)
            except ValueError:
                body = data.decode("utf-8", "replace")
            doc = {"subject": subject, "received": round(time.time(), 3), "data": body}
            if headers:
                doc["headers"] = headers
            sys.stdout.write(json.dumps(doc) + "\n")
            sys.stdout.flush()
        else:
            self.console.print(line(subject, data))
        self.left -= 1
        if self.left == 0:
            self.done.set()


REPLAY_WAIT_S = 10.0
"""Longest wait for the streams to hand over what they kept before it is printed."""


class Replay:
    """What the streams kept since `--since`, across several streams, printed in the order
    the server stored it (not stream by stream); then, once each stream is caught up,
    whatever comes next as it comes."""

    def __init__(self, printer: Printer) -> None:
        self.printer = printer
        self.kept: list[tuple[datetime, str, bytes, dict[str, str] | None]] = []
        self.behind: set[int] = set()
        self.caught_up = asyncio.Event()
        self.live = False

    def on_message(self, index: int) -> Any:
        async def on_js(msg: Any) -> None:
            if self.live:
                self.printer.show(msg.subject, msg.data, msg.headers)
                return
            self.kept.append((msg.metadata.timestamp, msg.subject, msg.data, msg.headers))
            if msg.metadata.num_pending == 0:
                self.done_with(index)

        return on_js

    def done_with(self, index: int) -> None:
        self.behind.discard(index)
        if not self.behind:
            self.caught_up.set()

    async def start(self, js: Any, patterns: list[str], since: timedelta) -> None:
        start = datetime.now(UTC) - since
        pairs = stream_filters(patterns)
        self.behind = set(range(len(pairs)))
        for index, (spec, flt) in enumerate(pairs):
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_TIME,
                opt_start_time=start,
                filter_subject=flt,
            )
            try:
                sub = await js.subscribe(
                    flt,
                    stream=spec.name,
                    cb=self.on_message(index),
                    ordered_consumer=True,
                    config=config,
                )
                if (await sub.consumer_info()).num_pending == 0:
                    self.done_with(index)
            except Exception as exc:
                print(f"fleet tail: cannot replay {flt} from {spec.name}: {exc}", file=sys.stderr)
                self.done_with(index)
        if pairs:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.caught_up.wait(), REPLAY_WAIT_S)
        for _ts, subject, data, headers in sorted(self.kept, key=lambda k: k[0]):
            self.printer.show(subject, data, headers)
        self.kept.clear()
        self.live = True


async def follow(args: argparse.Namespace) -> int:
    patterns = args.subjects or DEFAULT_SUBJECTS
    printer = Printer(args.json, args.count)
    nc = await cli_connect(args.nats, "fleet-tail")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, printer.done.set)
    explicit_telemetry = any(p.startswith("fleet.telemetry") for p in patterns)
    replayed = bool(args.since)
    try:

        async def on_core(msg: Any) -> None:
            if msg.subject.startswith("fleet.telemetry.") and not explicit_telemetry:
                return
            if replayed and stream_for(msg.subject) is not None:
                return  # the stream consumer shows it
            printer.show(msg.subject, msg.data, msg.headers)

        if replayed:
            await Replay(printer).start(nc.jetstream(), patterns, args.since)
        for pattern in patterns:
            await nc.subscribe(pattern, cb=on_core)
        await nc.flush()
        await printer.done.wait()
    finally:
        await nc.close()
    return 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(follow(args))
