"""The sim marketplace's units, in a process of their own:

    python -m services.provisioner.providers.simhost --state-dir DIR --nats URL --world JSON

A real unit reports from the unit, not from the control plane that rented it, so a
provisioner that restarts, is killed or loses its lease must not silence its units (the
watcher would declare them failed after `heartbeat_timeout_s` and the fleet would pay for
replacements of healthy units). So with `[sim] units = "process"` (the default) the
simulated units' heartbeats and jobs come from this process: it reads the units the sim
providers keep in their state files (`sim-<name>.json`, re-read when they change) and runs
the shared SimWorld over them, exactly as the provisioner did in-process (`units =
"inline"`, which tests use to avoid a process per test).

One host per state directory: it holds an exclusive lock on `sim-host.lock`, and a second
one exits at once. The provisioner (`SimHost`, below) starts it when no host holds the
lock and touches `sim-host.owner` every second while it runs; the host outlives the
provisioner's restarts and stops on SIGTERM, or once no provisioner has touched the owner
file for `[sim] orphan_s` (a provisioner gone for good leaves nothing running). It
connects as the provisioner does (its identity on a secured server).
`fleet up` stops it (`stop_host`) when it stops the services.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import msgspec

from contracts.telemetry import UnitTelemetry
from services.kit.bus import connect
from services.kit.config import NatsSettings
from services.kit.logs import setup_logging
from services.provisioner.providers.sim import SimUnit
from services.provisioner.providers.simworld import SimWorld

LOCK = "sim-host.lock"
OWNER = "sim-host.owner"
LOG = "sim-host.log"
ORPHAN_S = 60.0
"""Default seconds without a provisioner after which the host stops."""
KEEP_S = 1.0
"""How often the provisioner touches the owner file and checks that the host runs."""
RESPAWN_S = 10.0
"""Least seconds between two starts of the host (one that cannot start ends at once)."""
NATS_ENV = "FLEET_SIM_HOST_NATS"
"""The provisioner's `[nats]` settings, as JSON, for the host to connect as it does."""
log = logging.getLogger("fleet.sim")
_ROWS = msgspec.json.Decoder(list[SimUnit])


class FileSource:
    """One sim provider's units as its state file says, re-read when the file changes;
    each unit keeps the last busy time the world gave it across re-reads."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self._units: dict[str, SimUnit] = {}
        self._seen: int | None = None

    def ready_units(self, now: float) -> list[SimUnit]:
        """Units up at `now` (booted, not failed, not destroyed)."""
        self._refresh()
        return [u for u in self._units.values() if u.status(now) == "ready"]

    def _refresh(self) -> None:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._units, self._seen = {}, None
            return
        if stamp == self._seen:
            return
        try:
            rows = _ROWS.decode(self.path.read_bytes())
        except (OSError, msgspec.DecodeError):
            return  # replaced while read: the next tick reads the new file
        for u in rows:
            old = self._units.get(u.unit_id)
            if old is not None:
                u.last_busy_ts = max(u.last_busy_ts, old.last_busy_ts)
        self._units, self._seen = {u.unit_id: u for u in rows}, stamp


def holds_lock(state_dir: Path) -> IO[str] | None:
    """The lock file, locked by us; None when another process holds it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = open(state_dir / LOCK, "a+")  # held (locked) for the host's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


class SimHost:
    """The provisioner's side: start the host when none runs, and keep it told that a
    provisioner is alive (`keep`, a task of the world while the provisioner runs)."""

    def __init__(
        self,
        state_dir: Path,
        nats_url: str,
        world: Mapping[str, Any],
        capacities: Mapping[str, float],
        providers: Sequence[str],
        nats: NatsSettings | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.env = {**os.environ, NATS_ENV: msgspec.json.encode(nats or NatsSettings()).decode()}
        """The provisioner's connection settings (its identity on a secured server), in
        the environment rather than the command line: they may hold a password."""
        self.spawned_at = 0.0
        self.argv = [
            sys.executable,
            "-m",
            "services.provisioner.providers.simhost",
            "--state-dir",
            str(state_dir),
            "--nats",
            nats_url,
            "--world",
            json.dumps({"sim": dict(world), "capacities": dict(capacities)}),
            *(f"--provider={name}" for name in providers),
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def ensure(self) -> None:
        """Say we are alive, and start a host when none runs (reaping one that ended)."""
        (self.state_dir / OWNER).touch()
        if self.proc is not None and self.proc.poll() is not None:
            self.proc = None
        if running(self.state_dir):
            return
        if time.monotonic() - self.spawned_at < RESPAWN_S:
            return  # it just ended (see sim-host.log): do not start one every second
        self.spawned_at = time.monotonic()
        with open(self.state_dir / LOG, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        log.info("started the sim units' host", extra={"pid": self.proc.pid})

    async def keep(self) -> None:
        """`ensure` every KEEP_S seconds until cancelled (the provisioner stopping leaves
        the host running: its units go on reporting)."""
        while True:
            await asyncio.to_thread(self.ensure)
            await asyncio.sleep(KEEP_S)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the directory's host and reap it (for tests; a provisioner never does:
        its units outlive it)."""
        stop_host(self.state_dir, timeout_s)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout_s)
            self.proc = None


def running(state_dir: Path) -> bool:
    """True while some host holds the directory's lock."""
    handle = holds_lock(state_dir)
    if handle is None:
        return True
    handle.close()  # closing releases the lock
    return False


def stop_host(state_dir: Path, timeout_s: float = 10.0) -> bool:
    """Stop the units' host of `state_dir`, if one runs, and wait until it has gone
    (`fleet up` on its way out); False if it was still there after `timeout_s`. The pid
    is the one the host wrote into the lock file it holds, so nothing else is signalled."""
    if not (state_dir / LOCK).is_file() or not running(state_dir):
        return True
    try:
        pid = int((state_dir / LOCK).read_text().strip() or 0)
    except (OSError, ValueError):
        return False
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    give_up = time.monotonic() + timeout_s
    while running(state_dir):
        if time.monotonic() > give_up:
            return False
        time.sleep(0.05)
    return True


async def serve(args: argparse.Namespace) -> int:
    """Run the world over the state files until SIGTERM or orphaned."""
    state_dir = Path(args.state_dir)
    lock = holds_lock(state_dir)
    if lock is None:
        return 0  # another host serves this directory
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    spec = json.loads(args.world)
    section: dict[str, Any] = spec.get("sim", {})
    world = SimWorld.from_section(section, spec.get("capacities", {}))
    for name in args.provider:
        world.add(FileSource(name, state_dir / f"sim-{name}.json"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    orphan_s = float(section.get("orphan_s", ORPHAN_S))
    watchdog = asyncio.create_task(_orphaned(state_dir, orphan_s, stop))
    cfg = msgspec.json.decode(os.environ.get(NATS_ENV, "{}"), type=NatsSettings)
    try:
        try:  # as the provisioner connects: a secured server knows only its identity
            nc = await connect(
                args.nats,
                "fleet-sim-units",
                connect_timeout_s=cfg.connect_timeout_s,
                deadline_s=cfg.connect_deadline_s,
                reconnect_wait_s=cfg.reconnect_wait_s,
                user=cfg.user,
                password=cfg.password,
                creds_file=cfg.creds_file,
                nkeys_seed=cfg.nkeys_seed,
                inbox_prefix=cfg.inbox_prefix,
                stopping=stop.is_set,
            )
        except (ConnectionError, asyncio.CancelledError) as exc:
            log.error("the sim units' host cannot reach NATS: %s", exc)
            return 1

        async def publish(subject: str, beat: UnitTelemetry) -> None:
            await nc.publish(subject, msgspec.json.encode(beat))

        world.start(publish)
        world.start_jobs(nc)
        try:
            await stop.wait()
        finally:
            await world.stop()
            with contextlib.suppress(Exception):
                await nc.drain()
    finally:
        watchdog.cancel()
        await asyncio.gather(watchdog, return_exceptions=True)
        lock.close()
    return 0


async def _orphaned(state_dir: Path, orphan_s: float, stop: asyncio.Event) -> None:
    """Set `stop` once no provisioner has touched the owner file for `orphan_s`."""
    while not stop.is_set():
        try:
            idle_s = time.time() - (state_dir / OWNER).stat().st_mtime
        except FileNotFoundError:
            idle_s = orphan_s + 1
        if idle_s > orphan_s:
            log.warning("no provisioner for %.0f s; the sim units' host stops", idle_s)
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), KEEP_S)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m services.provisioner.providers.simhost`."""
    parser = argparse.ArgumentParser(prog="python -m services.provisioner.providers.simhost")
    parser.add_argument("--state-dir", required=True, help="the provisioner's store directory")
    parser.add_argument("--nats", required=True)
    parser.add_argument("--world", required=True, help='JSON: {"sim": {...}, "capacities": {}}')
    parser.add_argument("--provider", action="append", default=[], help="a sim provider's name")
    args = parser.parse_args(argv)
    setup_logging("sim-units")
    return asyncio.run(serve(args))


if __name__ == "__main__":
    raise SystemExit(main())
