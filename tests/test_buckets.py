"""KV buckets of the contract: one `ensure_bucket` opens them, and two processes
creating the same bucket at once both end up on the one bucket the first created."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import nats
import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from contracts.buckets import A2A_TASKS, ALL_BUCKETS, LEASES, RUNNER_SESSIONS, BucketSpec
from services.kit.buckets import bucket_keys, ensure_bucket


def test_agent_buckets_keep_their_names() -> None:
    """The names buckets had before they were declared, so stored tasks stay found."""
    assert A2A_TASKS.for_agent("agents.my-bot").name == "A2A_TASKS_agents_my-bot"
    assert RUNNER_SESSIONS.for_agent("agents.my-bot").name == "RUNNER_SESSIONS_agents_my_bot"
    assert LEASES.name == "fleet_leases"


def test_a_family_is_not_a_bucket() -> None:
    with pytest.raises(ValueError, match="not per agent"):
        LEASES.for_agent("x")
    assert len({b.name for b in ALL_BUCKETS}) == len(ALL_BUCKETS)


@pytest.fixture
async def two_clients(nats_url: str) -> AsyncIterator[tuple[Client, Client]]:
    a, b = await nats.connect(nats_url), await nats.connect(nats_url)
    yield a, b
    for client in (a, b):
        js = client.jetstream()
        for info in await js.streams_info():
            if info.config.name.startswith("KV_race_"):
                await js.delete_stream(info.config.name)
        await client.close()


async def test_two_concurrent_creators_share_one_bucket(two_clients: tuple[Client, Client]) -> None:
    """Each round: two processes find the bucket missing at the same moment and create it
    with different TTLs; one creates, the other binds, and both see each other's writes."""
    a, b = two_clients
    for round_ in range(5):
        spec = BucketSpec(name=f"race_{round_}", description="race test")
        kv_a, kv_b = await asyncio.gather(
            ensure_bucket(a.jetstream(), spec, ttl_s=60.0),
            ensure_bucket(b.jetstream(), spec, ttl_s=120.0),
        )
        await kv_a.put("from_a", b"1")
        assert (await kv_b.get("from_a")).value == b"1"
        status = await kv_b.status()
        assert status.bucket == spec.name
        assert status.ttl in (60.0, 120.0)


async def test_a_later_opener_binds_as_it_is(two_clients: tuple[Client, Client]) -> None:
    """The first creator fixes the shape; a later opener with another TTL does not change it."""
    a, b = two_clients
    spec = msgspec.structs.replace(LEASES, name="race_later")
    await ensure_bucket(a.jetstream(), spec, ttl_s=30.0)
    kv = await ensure_bucket(b.jetstream(), spec, ttl_s=5.0)
    assert (await kv.status()).ttl == 30.0


async def test_listing_keys_creates_no_consumer(nc: Client) -> None:
    """Keys come from the stream's subject counts: no consumer is asked for (one could be
    made to deliver the bucket anywhere, ADR 0013), and a deleted key, still listed while
    its marker is kept, reads as missing."""
    spec = BucketSpec(name="list_keys", description="listing test")
    kv = await ensure_bucket(nc.jetstream(), spec)
    consumer_calls = await nc.subscribe("$JS.API.CONSUMER.>")
    try:
        assert await bucket_keys(kv) == []
        for i in range(5):
            await kv.put(f"k.{i}", b"v")
        await kv.delete("k.3")
        listed = await bucket_keys(kv)
        assert {f"k.{i}" for i in range(5)} - {"k.3"} <= set(listed) <= {f"k.{i}" for i in range(5)}
        with pytest.raises(NotFoundError):
            await kv.get("k.3")
        await nc.flush()
        assert consumer_calls.pending_msgs == 0
    finally:
        await consumer_calls.unsubscribe()
        await nc.jetstream().delete_stream("KV_list_keys")


async def test_listing_the_keys_of_a_missing_bucket_finds_none(nc: Client) -> None:
    spec = BucketSpec(name="list_gone", description="listing test")
    kv = await ensure_bucket(nc.jetstream(), spec)
    await nc.jetstream().delete_stream("KV_list_gone")
    assert await bucket_keys(kv) == []


async def test_keys_beyond_the_servers_page_are_all_listed(nc: Client) -> None:
    """The server answers at most 100,000 subjects per STREAM.INFO (nats-server's
    JSMaxSubjectDetails); a bucket with more is read page by page, each key once."""
    spec = BucketSpec(name="list_many", description="paging test", storage="memory")
    kv = await ensure_bucket(nc.jetstream(), spec)
    count = 100_000 + 1_234
    try:
        for i in range(count):  # core publishes: the bucket's stream stores them all
            await nc.publish(f"$KV.list_many.k{i}", b"v")
        await nc.flush()
        js = nc.jetstream()
        for _ in range(200):  # stored asynchronously; bounded wait for the last one
            if (await js.stream_info("KV_list_many")).state.messages == count:
                break
            await asyncio.sleep(0.05)
        asks = await nc.subscribe("$JS.API.STREAM.INFO.KV_list_many")
        listed = await bucket_keys(kv)
        await nc.flush()
        assert asks.pending_msgs == 2  # two pages
        assert len(listed) == count
        assert set(listed) == {f"k{i}" for i in range(count)}
    finally:
        await nc.jetstream().delete_stream("KV_list_many")
