"""The built-in worker the `local` provider starts: a stand-in unit on this machine.

    python -m services.provisioner.worker --pool P --unit U --nats URL

It publishes a UnitTelemetry heartbeat every second on
`fleet.telemetry.<pool>.<unit>`, answers pings on `fleet.ping.<unit>` with its
pid and uptime, stops taking work when its unit is published `draining`, and
exits on SIGTERM or when its unit is published `terminated` (both only when signed by
the provisioner's key, `[signing] provisioner_key`). The hosted-agent
runner replaces it through `[providers.local] command`.

It also runs its pool's jobs (services/kit/jobworker.py), up to `--capacity` at
once, each job's `command` as a real subprocess; draining or SIGTERM hands
running jobs back to the queue.

It connects as `[nats]` says (FLEET_NATS__*): on a secured server as the `worker`
identity that `fleet up --secure` gives the local provider's processes, whose grants
are a unit's work and no more (tools/secure/grants.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path

import msgspec
from nats.aio.msg import Msg

from contracts import subjects
from contracts.base import UNDECODABLE
from contracts.events import PingReply, UnitEvent
from contracts.telemetry import UnitTelemetry
from services.kit.bus import connect_as
from services.kit.config import NatsSettings, table_settings
from services.kit.errors import ConfigError
from services.kit.jobexec import subprocess_runner
from services.kit.jobworker import JobWorker
from services.kit.messages import Delivery
from services.kit.process import CONFIG_ERROR_EXIT
from services.kit.signing import (
    Authors,
    signing_settings,
    trusted_keys,
    unkeyed,
    watcher_reports,
)

log = logging.getLogger("fleet.worker")


async def run(args: argparse.Namespace) -> int:
    """Connect, beat, answer pings, until told to stop."""
    started = time.time()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Only the provisioner's word drains or ends this unit: a forged `terminated` would
    # stop it and hand its jobs back (an unkeyed worker believes anyone; fleet up keys it).
    signing = signing_settings()
    authors = Authors(trusted_keys(signing, "provisioner"))
    reports = watcher_reports(signing)  # the provisioner acts on them; its word follows
    nats_settings = table_settings("nats", NatsSettings)
    unkeyed(
        authors.unkeyed_warning("unit events", "provisioner_key"),
        binding=not nats_settings.create_resources,
        log=log,
    )
    nc = await connect_as(args.nats, f"fleet-worker-{args.unit}", nats_settings, stop.is_set)
    draining = False
    jobs = JobWorker(
        nc,
        args.pool,
        args.unit,
        subprocess_runner(),
        slots=max(int(args.capacity), 1),
        ack_wait_s=args.job_ack_wait,
    )

    async def on_ping(msg: Msg) -> None:
        reply = PingReply(
            unit=args.unit,
            pool=args.pool,
            pid=os.getpid(),
            uptime_s=round(time.time() - started, 3),
            draining=draining,
        )
        await msg.respond(msgspec.json.encode(reply))

    async def on_event(msg: Msg) -> None:
        nonlocal draining
        try:
            event = msgspec.json.decode(msg.data, type=UnitEvent)
        except UNDECODABLE:
            return
        d = Delivery(msg.subject, msg.headers or {}, data=msg.data)
        if reports.signed(d):
            return
        forged = authors.problem(d)
        if forged is not None:
            log.warning("ignored a unit event: %s", forged)
            return
        if event.state == "draining" and not draining:
            draining = True
            await jobs.drain("is draining for scale-down")
        elif event.state in ("terminated", "failed"):
            stop.set()

    await nc.subscribe(subjects.unit_ping(args.unit), cb=on_ping)
    await nc.subscribe(subjects.unit(args.pool, args.unit), cb=on_event)
    await nc.flush()
    await jobs.start()
    last_busy = time.time()
    if args.ready_file:
        await asyncio.to_thread(Path(args.ready_file).touch)
    try:
        while not stop.is_set():
            if jobs.busy:
                last_busy = time.time()
            beat = UnitTelemetry(
                pool=args.pool,
                unit=args.unit,
                provider=args.provider,
                inflight=float(jobs.busy),
                capacity=args.capacity,
                utilization=min(jobs.busy / max(args.capacity, 1.0), 1.0),
                idle_s=round(time.time() - last_busy, 3),
            )
            await nc.publish(subjects.telemetry(args.pool, args.unit), msgspec.json.encode(beat))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.interval)
    finally:
        with contextlib.suppress(Exception):
            await jobs.stop()
        with contextlib.suppress(Exception):
            await nc.drain()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m services.provisioner.worker`."""
    parser = argparse.ArgumentParser(prog="python -m services.provisioner.worker")
    parser.add_argument("--pool", required=True)
    parser.add_argument("--unit", required=True)
    parser.add_argument("--nats", required=True)
    parser.add_argument("--provider", default="local")
    parser.add_argument("--capacity", type=float, default=1.0)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between heartbeats")
    parser.add_argument("--ready-file", default="", help="touched once connected")
    parser.add_argument(
        "--job-ack-wait",
        type=float,
        default=30.0,
        help="seconds a job may go without an in-progress ack before it is redelivered",
    )
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run(args))
    except ConfigError as exc:
        print(f"worker {args.unit}: {exc}", file=sys.stderr)
        return CONFIG_ERROR_EXIT


if __name__ == "__main__":
    raise SystemExit(main())
