"""A standby wakes when the lease key is deleted or expires (the server's expiry marker),
not at its next look; the marker an expiry leaves does not stop it taking the key; a
lease bucket made before markers gets them. (A SIGKILLed holder of the default lease is
replaced within 5 s: tests/test_lease.py.)"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.errors import KeyWrongLastSequenceError

from contracts.buckets import LEASES
from services.kit.buckets import ensure_bucket
from services.kit.config import KitSettings, load_settings
from services.kit.lease import BUCKET, MARKER, STREAM, Lease
from tests.test_lease import until


@pytest.fixture
def key() -> str:
    """A key of its own per test: a bucket deleted between tests and made again at once
    can come back with the old stream's last messages (a nats-server race)."""
    return f"watched-{uuid.uuid4().hex[:8]}"


async def expired(nc: Client, lease: Lease) -> int:
    """Wait until the server has written the expiry marker of `lease`'s key; its revision."""
    js = nc.jetstream()
    give_up = time.monotonic() + 10
    while time.monotonic() < give_up:
        msg = await js.get_msg(STREAM, subject=lease.subject)
        if MARKER in (msg.headers or {}):
            return int(msg.seq or 0)
        await asyncio.sleep(0.05)
    raise AssertionError("no expiry marker within 10 s")


async def test_an_expired_lease_is_taken_while_its_marker_is_the_latest_message(
    nc: Client, key: str
) -> None:
    js = nc.jetstream()
    gone = await Lease.open(js, key, "gone", 1.0)
    assert await gone.try_acquire()
    await expired(nc, gone)
    with pytest.raises(KeyWrongLastSequenceError):  # why the lease does not use kv.create
        await gone.kv.create(key, b"naive")
    nxt = await Lease.open(js, key, "next", 1.0)
    assert await nxt.try_acquire()
    assert (await nxt.kv.get(key)).value == b"next"
    assert not await gone.renew()  # the old holder learns it lost the lease
    assert not gone.held


async def test_a_standby_wakes_on_the_expiry_marker_not_at_its_next_look(
    nc: Client, key: str
) -> None:
    js = nc.jetstream()
    await ensure_bucket(js, LEASES, ttl_s=120.0)  # a bucket whose own TTL is long
    holder = await Lease.open(js, key, "holder", 1.0)  # its writes carry a 1 s TTL
    assert await holder.try_acquire()
    standby = await Lease.open(js, key, "standby", 60.0)
    assert standby.fallback_s == 30.0
    # The holder never renews: its key expires after a second, and the standby, whose
    # next look is 30 s away, takes the lease as soon as the marker arrives.
    assert await asyncio.wait_for(standby.acquire(asyncio.Event()), 10)
    assert (await standby.kv.get(key)).value == b"standby"


async def test_a_standby_wakes_when_the_holder_releases(nc: Client, key: str) -> None:
    js = nc.jetstream()
    holder = await Lease.open(js, key, "holder", 60.0)
    assert await holder.try_acquire()
    standby = await Lease.open(js, key, "standby", 60.0)
    waiting = asyncio.create_task(standby.acquire(asyncio.Event()))
    await until(lambda: standby.waiting, 10)  # it found the key held
    await holder.release()
    assert await asyncio.wait_for(waiting, 10)  # the key lives 60 s: only the delete woke it


async def test_a_standby_stops_waiting_when_asked(nc: Client, key: str) -> None:
    js = nc.jetstream()
    holder = await Lease.open(js, key, "holder", 60.0)
    assert await holder.try_acquire()
    standby = await Lease.open(js, key, "standby", 60.0)
    stop = asyncio.Event()
    waiting = asyncio.create_task(standby.acquire(stop))
    stop.set()
    assert await asyncio.wait_for(waiting, 10) is False
    assert not standby.held


async def test_a_bucket_made_without_markers_gets_them(nc: Client, key: str) -> None:
    js = nc.jetstream()
    await js.create_key_value(KeyValueConfig(bucket=BUCKET, ttl=3.0))  # as before markers
    assert not (await js.stream_info(STREAM)).config.subject_delete_marker_ttl
    lease = await Lease.open(js, key, "me", 3.0)
    assert lease.shape.markers and lease.fallback_s == 1.5
    assert (await js.stream_info(STREAM)).config.subject_delete_marker_ttl == 1.0


async def test_a_renewal_the_server_refuses_loses_the_lease(nc: Client, key: str) -> None:
    js = nc.jetstream()
    lease = await Lease.open(js, key, "me", 3.0)
    assert await lease.try_acquire()
    assert await lease.renew()
    await lease.kv.put(key, b"intruder")
    assert not await lease.renew() and not lease.held


def test_the_default_lease_is_short_enough_for_a_5_s_takeover() -> None:
    lease_s = load_settings(KitSettings, env={}).lease.lease_s
    assert lease_s <= 3.0  # expiry, then a standby's setup, within 5 s


async def test_a_standby_that_may_not_watch_looks_and_creates_no_consumer(
    nc: Client, key: str
) -> None:
    """A secured identity's grants allow no consumer on the lease bucket: its standby
    looks every lease_s / 4 instead, and still takes over."""
    js = nc.jetstream()
    holder = await Lease.open(js, key, "holder", 1.0)
    assert await holder.try_acquire()
    standby = await Lease.open(js, key, "standby", 1.0, watch=False)
    waiting = asyncio.create_task(standby.acquire(asyncio.Event()))
    await until(lambda: standby.waiting, 10)
    watching = [
        c for c in await js.consumers_info(STREAM) if c.config.filter_subject == standby.subject
    ]
    assert watching == []
    assert await asyncio.wait_for(waiting, 10)  # the holder never renews: its key expires
    assert (await standby.kv.get(key)).value == b"standby"
