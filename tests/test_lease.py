"""Singleton services: one holder of the lease runs, a standby takes over when
the holder stops, dies, or loses the lease; renewal keeps a live holder in place."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import msgspec
import pytest
from nats.aio.client import Client
from nats.js.kv import KeyValue

from services.kit import Service
from services.kit.config import KitSettings, LeaseSettings, load_settings
from services.kit.lease import BUCKET
from services.kit.service import LEASE_LOST_EXIT

REPO = Path(__file__).resolve().parents[1]
LEASE_S = 1.0
"""Short lease so takeover tests finish in seconds."""


class Single(Service):
    """A singleton that only records that its setup() ran."""

    name = "single"
    singleton = True
    migrations = ["CREATE TABLE notes (x INTEGER)"]

    def __init__(self, settings: KitSettings | None = None, *, nats_url: str | None = None) -> None:
        super().__init__(settings, nats_url=nats_url)
        self.set_up = asyncio.Event()

    async def setup(self) -> None:
        self.set_up.set()


def make_settings(tmp_path: Path) -> KitSettings:
    return load_settings(
        KitSettings,
        env={},
        overrides={
            "store": {"dir": str(tmp_path)},
            "stop_deadline_s": 0.5,
            "lease": {"lease_s": LEASE_S},
        },
    )


async def until(cond: Callable[[], object], timeout_s: float) -> None:
    """Wait until `cond()` is true, failing after `timeout_s`."""
    give_up = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > give_up:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.02)


async def holder_of(kv: KeyValue) -> str | None:
    """Who the bucket says holds `single`, or None."""
    try:
        entry = await kv.get(Single.name)
    except Exception:
        return None
    return entry.value.decode() if entry.value else None


@pytest.fixture
async def pair(nats_url: str, tmp_path: Path) -> AsyncIterator[tuple[Single, Single]]:
    """A holder that has started, and a second instance standing by."""
    first = Single(make_settings(tmp_path), nats_url=nats_url)
    second = Single(make_settings(tmp_path), nats_url=nats_url)
    await first.start()
    starting = asyncio.create_task(second.start())
    try:
        await until(lambda: second.state == "standby", 10)
        yield first, second
    finally:
        await first.stop()
        await second.stop()
        await asyncio.wait_for(starting, 10)


async def test_only_the_lease_holder_runs_setup(pair: tuple[Single, Single]) -> None:
    first, second = pair
    assert first.set_up.is_set() and first.state == "ready"
    assert not second.set_up.is_set()
    assert first.store is not None and second.store is None  # the store is the holder's
    assert first.status()["lease"] == "held" and second.status()["lease"] == "none"
    async with httpx.AsyncClient() as http:
        ready = await http.get(f"http://127.0.0.1:{second.http_port}/readyz")
        metrics = await http.get(f"http://127.0.0.1:{first.http_port}/metrics")
    assert ready.status_code == 200 and ready.json()["state"] == "standby"
    assert 'fleet_lease_held{service="single"} 1.0' in metrics.text


async def test_standby_shows_in_fleet_status(pair: tuple[Single, Single], nats_url: str) -> None:
    from tools.verbs.status import collect

    doc = await collect(nats_url)
    states = sorted(s["state"] for s in doc["services"] if s["name"] == "single")
    assert states == ["ready", "standby"]


async def test_standby_takes_over_when_the_holder_stops(pair: tuple[Single, Single]) -> None:
    first, second = pair
    await first.stop()
    await asyncio.wait_for(second.set_up.wait(), LEASE_S * 3)
    await until(lambda: second.state == "ready", 5)
    assert not first.lease_lost


async def test_renewal_keeps_the_lease_beyond_its_length(
    pair: tuple[Single, Single], nc: Client
) -> None:
    first, second = pair
    kv = await nc.jetstream().key_value(BUCKET)
    start = (await kv.get(Single.name)).revision
    renewals = 0

    async def renewed_four_times() -> None:
        nonlocal renewals
        while renewals < 4:  # four renewals span more than one lease
            entry = await kv.get(Single.name)
            renewals = (entry.revision or 0) - (start or 0)
            await asyncio.sleep(LEASE_S / 10)

    await asyncio.wait_for(renewed_four_times(), LEASE_S * 5)
    assert await holder_of(kv) == first.instance
    assert first.state == "ready" and second.state == "standby"


async def test_a_holder_that_loses_its_lease_stops(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    svc = Single(make_settings(tmp_path), nats_url=nats_url)
    await svc.start()
    try:
        kv = await nc.jetstream().key_value(BUCKET)
        await kv.purge(Single.name)  # as if it had expired during a long pause
        await kv.create(Single.name, b"someone-else")
        await until(lambda: svc.state == "stopped", LEASE_S * 3)
        assert svc.lease_lost
        assert await holder_of(kv) == "someone-else"  # it did not delete the new holder's key
    finally:
        await svc.stop()


def spawn_holder(
    nats_url: str, tmp_path: Path, lease_s: float | None = LEASE_S
) -> subprocess.Popen[bytes]:
    """`Single.main()` in its own process, as `fleet run` would start it (with the
    default lease when `lease_s` is None)."""
    env = {**os.environ, "FLEET_NATS_URL": nats_url, "FLEET_STORE__DIR": str(tmp_path)}
    env.pop("FLEET_LEASE__LEASE_S", None)
    if lease_s is not None:
        env["FLEET_LEASE__LEASE_S"] = str(lease_s)
    code = "import sys; from tests.test_lease import Single; sys.exit(Single.main())"
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env)


async def child_holds(proc: subprocess.Popen[bytes], nc: Client) -> KeyValue:
    """Wait until the child process holds the lease; the lease bucket."""
    give_up = time.monotonic() + 20
    while True:
        assert proc.poll() is None, f"the child exited with {proc.returncode}"
        assert time.monotonic() < give_up, "the child never took the lease"
        try:
            kv = await nc.jetstream().key_value(BUCKET)
            holder = await holder_of(kv)
        except Exception:
            holder = None
        if holder and f"-{proc.pid}-" in holder:
            return kv
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("lease_s", [LEASE_S, None], ids=["short", "default"])
async def test_standby_takes_over_within_5_s_when_the_holder_is_killed(
    nats_url: str, nc: Client, tmp_path: Path, lease_s: float | None
) -> None:
    """The default lease (None) is short enough that a SIGKILLed holder is replaced,
    ready, within 5 s: its key expires and the standby watching it takes it at once."""
    proc = spawn_holder(nats_url, tmp_path, lease_s)
    settings = make_settings(tmp_path)
    if lease_s is None:
        settings = msgspec.structs.replace(settings, lease=LeaseSettings())
    standby = Single(settings, nats_url=nats_url)
    starting: asyncio.Task[None] | None = None
    try:
        kv = await child_holds(proc, nc)
        starting = asyncio.create_task(standby.start())
        await until(lambda: standby.state == "standby", 10)
        proc.send_signal(signal.SIGKILL)  # no release: the key has to expire
        killed = time.monotonic()
        await asyncio.wait_for(standby.set_up.wait(), 10)
        await until(lambda: standby.state == "ready", 5)
        took_s = time.monotonic() - killed
        assert took_s <= 5.0, f"ready {took_s:.1f} s after the kill"
        assert await holder_of(kv) == standby.instance
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        await standby.stop()
        if starting is not None:
            await asyncio.wait_for(starting, 10)


async def test_fleet_run_exits_non_zero_when_the_lease_is_lost(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    proc = spawn_holder(nats_url, tmp_path)
    try:
        kv = await child_holds(proc, nc)
        await kv.purge(Single.name)
        await kv.create(Single.name, b"someone-else")
        code = await asyncio.wait_for(asyncio.to_thread(proc.wait), 15)
        assert code == LEASE_LOST_EXIT
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
