"""Acked publishes over one reply subscription (services.kit.puback), against a real
nats-server: what the stream answers is what the publisher gets."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig

from services.kit.puback import PubAcks, PublishRefused


async def test_publishes_are_stored_in_order_and_a_repeated_id_is_a_duplicate(nc: Client) -> None:
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="PUBACK", subjects=["puback.>"]))
    acks = PubAcks(nc)
    await acks.start()
    try:
        futs = [await acks.send("puback.a", f"m{i}".encode(), f"id-{i}") for i in range(200)]
        stored = await asyncio.gather(*futs)
        again = await acks.publish("puback.a", b"m0 again", "id-0")
    finally:
        await acks.close()
    assert [s.seq for s in stored] == list(range(1, 201))
    assert {s.stream for s in stored} == {"PUBACK"} and not any(s.duplicate for s in stored)
    assert again.duplicate and again.seq == 1
    assert (await js.stream_info("PUBACK")).state.messages == 200
    assert acks.pending == 0


async def test_a_subject_no_stream_takes_is_refused(nc: Client) -> None:
    acks = PubAcks(nc)
    try:
        with pytest.raises(PublishRefused, match="no stream"):
            await acks.publish("puback.nowhere", b"x", "id-1")
    finally:
        await acks.close()


async def test_the_streams_error_is_the_reason(nc: Client) -> None:
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="PUBSMALL", subjects=["pubsmall.>"], max_msg_size=64))
    acks = PubAcks(nc)
    try:
        with pytest.raises(PublishRefused, match="exceeds maximum"):
            await acks.publish("pubsmall.a", b"x" * 200, "id-1")
        ok = await acks.publish("pubsmall.a", b"small", "id-2")
    finally:
        await acks.close()
    assert ok.seq == 1


async def test_an_unanswered_publish_fails_after_the_timeout(nc: Client) -> None:
    # A core subscriber takes the subject (so no "no responders") but never acks.
    sub = await nc.subscribe("puback.silent")
    acks = PubAcks(nc, timeout_s=0.2)
    try:
        with pytest.raises(TimeoutError, match="no ack"):
            await acks.publish("puback.silent", b"x", "id-1")
        assert acks.pending == 0
    finally:
        await acks.close()
        await sub.unsubscribe()


async def test_closing_fails_what_still_waits(nc: Client) -> None:
    sub = await nc.subscribe("puback.silent")
    acks = PubAcks(nc, timeout_s=30)
    fut = await acks.send("puback.silent", b"x", "id-1")
    await acks.close()
    await sub.unsubscribe()
    with pytest.raises(TimeoutError, match="closed"):
        await fut
